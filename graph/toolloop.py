"""A bounded tool-calling loop for panel and judge calls."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import openai
from langchain_core.language_models import BaseChatModel, LanguageModelInput
from langchain_core.messages import AIMessage, BaseMessage, ToolCall, ToolMessage
from langchain_core.runnables import Runnable, RunnableConfig
from langchain_core.tools import BaseTool

from langfusion.graph.citations import from_annotations, from_artifact
from langfusion.graph.errors import redact
from langfusion.graph.models import ModelTraits
from langfusion.graph.schema import Citation, Usage

BUDGET_SPENT = (
    "Tool budget spent: no more tool calls are possible in this answer. "
    "Answer now from what you have."
)

# The request fields an OpenAI-compatible server names in a 400's `param` (or
# `code`) when the model it serves cannot take tools.
_TOOL_FIELDS = frozenset(
    {"tools", "tool_choice", "parallel_tool_calls", "functions", "function_call"}
)

ChatRunnable = Runnable[LanguageModelInput, BaseMessage]


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


def refuses_tools(exc: openai.APIStatusError) -> bool:
    """Whether the endpoint refused a request because it offered tools.

    Read from the structured error (HTTP 400 whose ``param`` or ``code`` names
    a tool field, as OpenAI-compatible servers report it), never from the
    message text, which may say "tool" or "function" about anything.
    """
    return exc.status_code == 400 and (_names_tools(exc.param) or _names_tools(exc.code))


def _names_tools(field: str | None) -> bool:
    # `tools`, and paths into it such as `tools[0].function.parameters`.
    return bool(field) and re.split(r"[.\[]", str(field), maxsplit=1)[0] in _TOOL_FIELDS


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

    The calls of one turn run together; their results go back in the order
    the model asked for them, a failed call's error as its own result. A
    model whose traits say it takes no tools, or whose endpoint refuses a
    request with tools (see :func:`refuses_tools`), answers without them.

    Args:
        model: The chat model.
        messages: Its prompt.
        tools: Client-side tools, run here.
        max_tool_calls: Tool calls allowed before the model must answer.
        config: The run config of the calls; the tools' runs take its tags
            and metadata, so they sit beside the model's calls in a trace.
        server_tools: Tools the endpoint runs itself (OpenRouter's
            ``openrouter:web_search``), sent instead of ``tools``.
    """
    if server_tools:
        offered: ChatRunnable | None = model.bind(tools=list(server_tools))
    else:
        offered = _with_tools(model, tools)
    if offered is None:
        return _result([await _reply(model, messages, config)])
    try:
        first = await _reply(offered, messages, config)
    except openai.APIStatusError as exc:
        if not refuses_tools(exc):
            raise
        return _result([await _reply(model, messages, config)])
    if server_tools:
        return _result([first])
    loop = _Loop(
        offered=offered,
        final=_answering(model, tools),
        tools={tool.name: tool for tool in tools},
        max_tool_calls=max_tool_calls,
        config=config,
    )
    return await loop.run([*messages], first)


@dataclass(frozen=True)
class _Loop:
    """One call's loop: the model with tools, the model made to answer, the tools."""

    offered: ChatRunnable
    final: ChatRunnable
    tools: Mapping[str, BaseTool]
    max_tool_calls: int
    config: RunnableConfig | None

    async def run(self, transcript: list[BaseMessage], reply: AIMessage) -> LoopResult:
        replies, cited, calls = [reply], from_annotations(reply), 0
        while reply.tool_calls:
            asked = reply.tool_calls
            budget = self.max_tool_calls - calls
            results = await self.run_turn(asked[:budget])
            calls += len(results)
            cited += [page for result in results if (page := _page(result))]
            spent = [ToolMessage(BUDGET_SPENT, tool_call_id=c["id"] or "") for c in asked[budget:]]
            transcript += [reply, *results, *spent]
            runnable = self.final if calls >= self.max_tool_calls else self.offered
            reply = await _reply(runnable, transcript, self.config)
            replies.append(reply)
            cited += from_annotations(reply)
            if runnable is self.final:
                break
        return _result(replies, calls, cited)

    async def run_turn(self, calls: Sequence[ToolCall]) -> list[ToolMessage]:
        """Run one turn's tool calls together; the results keep the order of ``calls``."""
        config = _tool_config(self.config)
        return list(
            await asyncio.gather(*(_call_tool(self.tools.get(c["name"]), c, config) for c in calls))
        )


async def _call_tool(
    tool: BaseTool | None, call: ToolCall, config: RunnableConfig | None
) -> ToolMessage:
    call_id = call["id"] or ""
    if tool is None:
        return ToolMessage(f"Error: there is no tool named {call['name']!r}.", tool_call_id=call_id)
    try:
        # Called with the whole tool call, a tool answers with a ToolMessage that
        # carries its artifact (web_fetch's page URL and title).
        output = await tool.ainvoke({**call, "id": call_id, "type": "tool_call"}, config)
    except Exception as exc:  # noqa: BLE001 - a tool error is the model's to read, not ours
        error = redact(str(exc)) or type(exc).__name__
        return ToolMessage(
            f"Error from {call['name']}: {error}", tool_call_id=call_id, status="error"
        )
    if isinstance(output, ToolMessage):
        return output
    return ToolMessage(output if isinstance(output, str) else str(output), tool_call_id=call_id)


def _page(result: ToolMessage) -> Citation | None:
    return from_artifact(result.artifact) if result.status != "error" else None


def _tool_config(config: RunnableConfig | None) -> RunnableConfig | None:
    """The model call's config for a tool's run, which keeps its own name and id."""
    if config is None:
        return None
    tool_config = config.copy()
    tool_config.pop("run_name", None)
    tool_config.pop("run_id", None)
    return tool_config


def _with_tools(model: BaseChatModel, tools: Sequence[BaseTool]) -> ChatRunnable | None:
    if not tools or not ModelTraits.of(model).takes_tools:
        return None
    try:
        return model.bind_tools(list(tools))
    except NotImplementedError:
        return None


def _answering(model: BaseChatModel, tools: Sequence[BaseTool]) -> ChatRunnable:
    try:
        # Once the budget is spent the model must answer, but the tools stay
        # declared: some providers reject a transcript with undeclared tool calls.
        return model.bind_tools(list(tools), tool_choice="none")
    except (NotImplementedError, ValueError):
        return model


async def _reply(
    runnable: ChatRunnable, messages: Sequence[BaseMessage], config: RunnableConfig | None
) -> AIMessage:
    message = await runnable.ainvoke(list(messages), config)
    return message if isinstance(message, AIMessage) else AIMessage(content=message.content)


def _result(
    replies: list[AIMessage], calls: int = 0, cited: list[Citation] | None = None
) -> LoopResult:
    usages = [u for r in replies if (u := Usage.from_metadata(r.usage_metadata)) is not None]
    pages = from_annotations(replies[-1]) if cited is None else cited
    return LoopResult(replies[-1], Usage.total(usages) if usages else None, calls, tuple(pages))
