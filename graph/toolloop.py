"""A bounded tool-calling loop for panel and judge calls."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import openai
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage, ToolCall, ToolMessage
from langchain_core.runnables import RunnableConfig
from langchain_core.tools import BaseTool

from langfusion.graph.citations import from_annotations, from_artifact
from langfusion.graph.errors import redact
from langfusion.graph.schema import Citation, Usage

BUDGET_SPENT = (
    "Tool budget spent: no more tool calls are possible in this answer. "
    "Answer now from what you have."
)


@dataclass(frozen=True)
class LoopResult:
    """The model's final message, the usage of every call, the tool calls made.

    ``citations`` are the pages it read or cited: tool results whose artifact
    names a page (``web_fetch``), and the ``url_citation`` annotations of its
    replies (a provider's own web tools).
    """

    message: AIMessage
    usage: Usage | None
    tool_calls: int
    citations: tuple[Citation, ...] = ()


def _rejects_tools(exc: openai.BadRequestError) -> bool:
    return "tool" in str(exc).lower() or "function" in str(exc).lower()


async def _call_tool(tool: BaseTool | None, call: ToolCall) -> ToolMessage:
    call_id = call["id"] or ""
    if tool is None:
        return ToolMessage(f"Error: there is no tool named {call['name']!r}.", tool_call_id=call_id)
    try:
        # Called with the whole tool call, a tool answers with a ToolMessage that
        # carries its artifact (web_fetch's page URL and title).
        output = await tool.ainvoke({**call, "id": call_id, "type": "tool_call"})
    except Exception as exc:  # noqa: BLE001 - a tool error is the model's to read, not ours
        error = redact(str(exc)) or type(exc).__name__
        return ToolMessage(f"Error from {call['name']}: {error}", tool_call_id=call_id)
    if isinstance(output, ToolMessage):
        return output
    return ToolMessage(output if isinstance(output, str) else str(output), tool_call_id=call_id)


async def answer_with_tools(
    model: BaseChatModel,
    messages: Sequence[BaseMessage],
    tools: Sequence[BaseTool],
    *,
    max_tool_calls: int,
    config: RunnableConfig | None = None,
    server_tools: Sequence[dict[str, Any]] = (),
) -> LoopResult:
    """Let ``model`` call ``tools`` at most ``max_tool_calls`` times, then answer.

    Tool errors go back to the model as the tool's result. A model or
    endpoint without tool calling answers without the tools.

    Args:
        model: The chat model.
        messages: Its prompt.
        tools: Client-side tools, run here.
        max_tool_calls: Tool calls allowed before the model must answer.
        config: The run config of the calls.
        server_tools: Tools the endpoint runs itself (OpenRouter's
            ``openrouter:web_search``), sent instead of ``tools``.
    """
    usages: list[Usage | None] = []
    if server_tools:
        try:
            reply = _as_ai(
                await model.bind(tools=list(server_tools)).ainvoke(list(messages), config)
            )
        except openai.BadRequestError as exc:
            if not _rejects_tools(exc):
                raise
            return await answer_with_tools(model, messages, (), max_tool_calls=0, config=config)
        usage = Usage.from_metadata(reply.usage_metadata)
        return LoopResult(reply, usage, 0, tuple(from_annotations(reply)))
    if not tools:
        message = _as_ai(await model.ainvoke(list(messages), config))
        usage = Usage.from_metadata(message.usage_metadata)
        return LoopResult(message, usage, 0, tuple(from_annotations(message)))
    try:
        bound = model.bind_tools(list(tools))
    except NotImplementedError:
        return await answer_with_tools(model, messages, (), max_tool_calls=0, config=config)

    try:
        # Once the budget is spent the model must answer, but the tools stay
        # declared: some providers reject a transcript with undeclared tool calls.
        final = model.bind_tools(list(tools), tool_choice="none")
    except (NotImplementedError, ValueError):
        final = model

    by_name = {tool.name: tool for tool in tools}
    transcript = list(messages)
    calls = 0
    cited: list[Citation] = []
    runnable = bound
    while True:
        try:
            reply = _as_ai(await runnable.ainvoke(transcript, config))
        except openai.BadRequestError as exc:
            if runnable is not bound or calls or not _rejects_tools(exc):
                raise
            return await answer_with_tools(model, messages, (), max_tool_calls=0, config=config)
        usages.append(Usage.from_metadata(reply.usage_metadata))
        cited += from_annotations(reply)
        if not reply.tool_calls or runnable is final:
            return LoopResult(reply, _sum(usages), calls, tuple(cited))
        transcript.append(reply)
        for call in reply.tool_calls:
            if calls >= max_tool_calls:
                result = ToolMessage(BUDGET_SPENT, tool_call_id=call["id"] or "")
            else:
                calls += 1
                result = await _call_tool(by_name.get(call["name"]), call)
                page = from_artifact(result.artifact) if result.status != "error" else None
                cited += [page] if page else []
            transcript.append(result)
        if calls >= max_tool_calls:
            runnable = final


def _as_ai(message: BaseMessage) -> AIMessage:
    if isinstance(message, AIMessage):
        return message
    return AIMessage(content=message.content)


def _sum(usages: list[Usage | None]) -> Usage | None:
    present = [u for u in usages if u is not None]
    return Usage.total(present) if present else None
