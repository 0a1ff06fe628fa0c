"""A bounded tool-calling loop for panel and judge calls."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import openai
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage, ToolMessage
from langchain_core.runnables import RunnableConfig
from langchain_core.tools import BaseTool

from langfusion.graph.errors import redact
from langfusion.graph.schema import Usage

BUDGET_SPENT = (
    "Tool budget spent: no more tool calls are possible in this answer. "
    "Answer now from what you have."
)


@dataclass(frozen=True)
class LoopResult:
    """The model's final message, the usage of every call, and the tool calls made."""

    message: AIMessage
    usage: Usage | None
    tool_calls: int


def _rejects_tools(exc: openai.BadRequestError) -> bool:
    return "tool" in str(exc).lower() or "function" in str(exc).lower()


async def _call_tool(tool: BaseTool | None, call_name: str, args: dict[str, Any]) -> str:
    if tool is None:
        return f"Error: there is no tool named {call_name!r}."
    try:
        output = await tool.ainvoke(args)
    except Exception as exc:  # noqa: BLE001 - a tool error is the model's to read, not ours
        return f"Error from {call_name}: {redact(str(exc)) or type(exc).__name__}"
    return output if isinstance(output, str) else str(output)


async def answer_with_tools(
    model: BaseChatModel,
    messages: Sequence[BaseMessage],
    tools: Sequence[BaseTool],
    *,
    max_tool_calls: int,
    config: RunnableConfig | None = None,
) -> LoopResult:
    """Let ``model`` call ``tools`` at most ``max_tool_calls`` times, then answer.

    Tool errors go back to the model as the tool's result. A model or
    endpoint without tool calling answers without the tools.
    """
    usages: list[Usage | None] = []
    if not tools:
        message = await model.ainvoke(list(messages), config)
        return LoopResult(_as_ai(message), Usage.from_metadata(message.usage_metadata), 0)
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
    runnable = bound
    while True:
        try:
            reply = _as_ai(await runnable.ainvoke(transcript, config))
        except openai.BadRequestError as exc:
            if runnable is not bound or calls or not _rejects_tools(exc):
                raise
            return await answer_with_tools(model, messages, (), max_tool_calls=0, config=config)
        usages.append(Usage.from_metadata(reply.usage_metadata))
        if not reply.tool_calls or runnable is final:
            return LoopResult(reply, _sum(usages), calls)
        transcript.append(reply)
        for call in reply.tool_calls:
            if calls >= max_tool_calls:
                content = BUDGET_SPENT
            else:
                calls += 1
                content = await _call_tool(by_name.get(call["name"]), call["name"], call["args"])
            transcript.append(ToolMessage(content=content, tool_call_id=call["id"] or ""))
        if calls >= max_tool_calls:
            runnable = final


def _as_ai(message: BaseMessage) -> AIMessage:
    if isinstance(message, AIMessage):
        return message
    return AIMessage(content=message.content)


def _sum(usages: list[Usage | None]) -> Usage | None:
    present = [u for u in usages if u is not None]
    return Usage.total(present) if present else None
