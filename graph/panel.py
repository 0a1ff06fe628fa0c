"""One panel call: its messages, the call, and what its reply says about itself."""

from __future__ import annotations

import time
from collections.abc import Sequence

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AnyMessage, BaseMessage, SystemMessage
from langchain_core.tools import BaseTool
from langgraph.config import get_stream_writer

from langfusion.graph.context import FusionContext
from langfusion.graph.conversation import message_text
from langfusion.graph.depth import active, child_config
from langfusion.graph.errors import (
    EmptyCompletionError,
    PanelDeadlineError,
    RefusedError,
    classify,
    status_of,
)
from langfusion.graph.models import ModelTraits, call_deadline, offered_server_tools
from langfusion.graph.prompts import (
    PANEL_INSTRUCTIONS,
    PANEL_SYSTEM,
    PANEL_TOOLS_NOTE,
)
from langfusion.graph.schema import Citation, FailedModel, PanelResponse, Usage
from langfusion.graph.state import PanelTask
from langfusion.graph.toolloop import answer_with_tools

_MAX_REFUSAL_CHARS = 200


def plain_prompts(model: BaseChatModel) -> bool:
    """Whether ``model`` is a small base model that gets plain text instead of tagged prompts."""
    return ModelTraits.of(model).plain_prompts


def panel_messages(
    messages: Sequence[AnyMessage], asked: str | None, *, tools: bool, plain: bool = False
) -> list[BaseMessage]:
    """What a panel model is sent: one system prompt, with the asker's instructions, then the turns.

    Args:
        messages: The conversation up to the question, without its system messages.
        asked: The asker's instructions (its system messages), if any.
        tools: Whether the call may use web tools (their results are untrusted).
        plain: For a small base model: no panel prompt of ours (it would
            continue it into its answer), only the asker's own instructions.
    """
    parts = [] if plain else [PANEL_SYSTEM]
    if tools and not plain:
        parts.append(PANEL_TOOLS_NOTE)
    if asked:
        parts.append(asked if plain else PANEL_INSTRUCTIONS.format(instructions=asked))
    system = [SystemMessage("\n\n".join(parts))] if parts else []
    return [*system, *messages]


def check_not_refused(message: BaseMessage) -> None:
    """Raise ``RefusedError`` when the provider marked ``message`` as a refusal.

    A ``refusal`` field, or ``finish_reason: "content_filter"`` (whatever
    text came before the filter stopped it).
    """
    refusal = message.additional_kwargs.get("refusal")
    if isinstance(refusal, str) and refusal.strip():
        text = " ".join(refusal.split())[:_MAX_REFUSAL_CHARS]
        raise RefusedError(f"the model refused to answer: {text}")
    if message.response_metadata.get("finish_reason") == "content_filter":
        raise RefusedError("the provider's content filter stopped the answer")


def empty_because(truncated: bool, cap: int | None) -> str:
    """Why a panel answer with no visible text failed: said plainly, naming the cap if hit."""
    if not truncated:
        return "the model returned an empty answer"
    limit = f"max_completion_tokens={cap}" if cap else "the provider's completion cap"
    return (
        f"the model returned no visible text: it stopped at {limit} (finish_reason "
        "'length'), its reasoning having used the whole cap; raise max_completion_tokens "
        "or lower the reasoning effort"
    )


async def answer_panel(
    model: BaseChatModel,
    ctx: FusionContext,
    task: PanelTask,
    slug: str,
    deadline_s: float,
    web_tools: Sequence[BaseTool],
) -> tuple[PanelResponse, list[Citation]]:
    """``model``'s (``slug``'s) answer to the panel question within ``deadline_s``.

    Its endpoint's own web tools where it serves them, else ``web_tools``.

    Raises:
    PanelDeadlineError: No answer before the deadline.
    RefusedError: The provider marked the answer as a refusal.
    EmptyCompletionError: No visible text (said why, with the cap if it was hit).
    """
    writer = get_stream_writer()
    on_server = offered_server_tools(
        model, enabled=ctx.web_tools, max_tool_calls=ctx.max_tool_calls
    )
    tools = () if on_server else web_tools
    messages = panel_messages(
        task["messages"],
        task["instructions"],
        tools=bool(tools or on_server),
        plain=plain_prompts(model),
    )
    started = time.monotonic()
    config = child_config(
        task["depth"], task["fusion_id"], "panel", slug, nostream=not ctx.stream_panel_tokens
    )
    try:
        with active(task["depth"]):
            async with call_deadline(deadline_s) as call:
                outcome = await answer_with_tools(
                    model,
                    messages,
                    tools,
                    max_tool_calls=ctx.max_tool_calls,
                    config=config,
                    server_tools=on_server,
                )
    except TimeoutError as exc:
        raise PanelDeadlineError(f"no answer within timeout_s={ctx.timeout_s:g}s") from exc
    check_not_refused(outcome.message)
    content = message_text(outcome.message)
    truncated = outcome.message.response_metadata.get("finish_reason") == "length"
    if not content.strip():
        raise EmptyCompletionError(empty_because(truncated, ctx.max_completion_tokens))
    response = PanelResponse(
        model=slug,
        content=content,
        usage=Usage.with_cost(outcome.usage, call.cost),
        latency_s=round(time.monotonic() - started, 3),
        tool_calls=outcome.tool_calls,
        truncated=truncated,
    )
    usage = response.usage
    tokens, cost = (usage.output_tokens, usage.cost) if usage else (None, None)
    event = {"event": "panel_finished", "model": slug, "seconds": response.latency_s}
    writer(event | {"tokens": tokens, "cost": cost})
    return response, list(outcome.citations)


def failed(slug: str, exc: BaseException, replaced_by: str | None = None) -> FailedModel:
    """``slug``'s failure as the result lists it, told to the stream as it happens."""
    reason, message = classify(exc)
    status = status_of(exc)
    event = {"event": "panel_failed", "model": slug, "reason": reason, "status_code": status}
    get_stream_writer()(event | {"error": message, "replaced_by": replaced_by})
    return FailedModel(
        model=slug,
        error=message,
        failure_reason=reason,
        status_code=status,
        replaced_by=replaced_by,
    )
