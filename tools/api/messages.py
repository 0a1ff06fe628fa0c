"""The conversation a client sends, as LangChain messages, and the fusion records in it.

A response that ran fusion carries a record of it (Chat Completions: a
``reasoning.server_tool_call`` entry in ``message.reasoning_details``; the
Responses API: the ``openrouter:fusion`` output item). A client that sends
the conversation back sends the record back, and the record is the memory:
the server keeps nothing between requests.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from langchain_core.messages import (
    AIMessage,
    BaseMessage,
    HumanMessage,
    SystemMessage,
    ToolMessage,
)
from pydantic import ValidationError

from langfusion.graph.errors import reason_for_status
from langfusion.graph.schema import FusionResult
from langfusion.tools.api.errors import ApiError

__all__ = [
    "RECORD_TYPE",
    "SERVER_TOOL",
    "TOOL_NAME",
    "Conversation",
    "FusionRecord",
    "chat_conversation",
    "responses_conversation",
]

SERVER_TOOL = "openrouter:fusion"
# The function the calling model is offered (``FusionTool.name``).
TOOL_NAME = "fusion"
RECORD_TYPE = "reasoning.server_tool_call"


@dataclass(frozen=True)
class FusionRecord:
    """One fusion a request ran (or reused), as the response records it.

    Attributes:
        call_id: The calling model's tool-call id (or one made for the alias).
        arguments: The call's arguments, as JSON text.
        result_json: The tool result the calling model read.
        result: That result, typed; ``None`` for a result that is no run's
            (a capped second call).
        executed: A panel ran for it in this request (not reused, not capped).
    """

    call_id: str
    arguments: str
    result_json: str
    result: FusionResult | None
    executed: bool

    def detail(self, index: int) -> dict[str, Any]:
        """The ``reasoning_details`` entry of a chat completion."""
        return {
            "type": RECORD_TYPE,
            "tool_name": SERVER_TOOL,
            "id": self.call_id,
            "tool_call_id": self.call_id,
            "arguments": self.arguments,
            "result": self.result_json,
            "index": index,
        }


@dataclass
class Conversation:
    """The client's conversation, and the fusion it already ran for its last question.

    Attributes:
        messages: The conversation as LangChain messages; with ``replay``, each
            recorded fusion is back in place as the tool call and tool result
            the calling model saw.
        recorded: The last record after the last user message, if any: the
            analysis this question already has.
    """

    messages: list[BaseMessage]
    recorded: FusionRecord | None

    @property
    def ends_with_tool_result(self) -> bool:
        """Whether the last message is a tool result (an agent loop's next step)."""
        return bool(self.messages) and isinstance(self.messages[-1], ToolMessage)


def _text(content: object, where: str) -> str | list[Any]:
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts: list[Any] = []
        for part in content:
            if not isinstance(part, dict):
                raise ApiError(400, f"{where} holds a content part that is not an object.")
            kind = part.get("type")
            if kind in ("input_text", "output_text", "text"):
                parts.append({"type": "text", "text": str(part.get("text") or "")})
            elif kind == "input_image":
                parts.append({"type": "image_url", "image_url": {"url": part.get("image_url")}})
            else:
                parts.append(part)
        if all(p.get("type") == "text" for p in parts):
            return "".join(p["text"] for p in parts)
        return parts
    raise ApiError(400, f"{where}.content must be a string or a list of content parts.")


def _arguments(raw: object, where: str) -> dict[str, Any]:
    if isinstance(raw, dict):
        return raw
    try:
        parsed = json.loads(raw) if isinstance(raw, str) and raw.strip() else {}
    except json.JSONDecodeError:
        raise ApiError(400, f"{where}.arguments is not JSON.") from None
    if not isinstance(parsed, dict):
        raise ApiError(400, f"{where}.arguments must be a JSON object.")
    return parsed


def _fusion_call(record: FusionRecord) -> list[BaseMessage]:
    """The tool call and result the calling model saw for ``record``."""
    try:
        args = json.loads(record.arguments)
    except json.JSONDecodeError:
        args = {}
    call = {"name": TOOL_NAME, "args": args if isinstance(args, dict) else {}}
    return [
        AIMessage("", tool_calls=[call | {"id": record.call_id, "type": "tool_call"}]),
        ToolMessage(record.result_json, tool_call_id=record.call_id),
    ]


def _record_of_detail(detail: Mapping[str, Any], where: str) -> FusionRecord | None:
    if detail.get("type") != RECORD_TYPE or detail.get("tool_name") != SERVER_TOOL:
        return None
    raw = detail.get("result")
    if not isinstance(raw, str):
        raise ApiError(400, f"{where}.result must be the fusion result as a JSON string.")
    try:
        result: FusionResult | None = FusionResult.model_validate_json(raw)
    except ValidationError:
        result = None  # a capped call's result: no run's, nothing to reuse
    call_id = detail.get("tool_call_id") or detail.get("id") or f"call_{uuid.uuid4().hex[:24]}"
    arguments = detail.get("arguments")
    return FusionRecord(
        call_id=str(call_id),
        arguments=arguments if isinstance(arguments, str) else json.dumps(arguments or {}),
        result_json=raw,
        result=result,
        executed=False,
    )


def _last_user(messages: Sequence[BaseMessage]) -> int:
    for index in range(len(messages) - 1, -1, -1):
        if isinstance(messages[index], HumanMessage):
            return index
    return -1


def _conclude(messages: list[BaseMessage], records: list[tuple[int, FusionRecord]]) -> Conversation:
    question_at = _last_user(messages)
    current = [r for at, r in records if at > question_at and r.result is not None]
    return Conversation(messages=messages, recorded=current[-1] if current else None)


def chat_conversation(raw: object, *, replay: bool) -> Conversation:
    """Read a Chat Completions ``messages`` array.

    Args:
        raw: The ``messages`` field.
        replay: Put each recorded fusion back as the tool call and result the
            calling model saw (the server tool); the alias needs none.

    Raises:
        ApiError: 400, naming the message that is not one.
    """
    if not isinstance(raw, list) or not raw:
        raise ApiError(400, "messages must be a non-empty array of chat messages.")
    messages: list[BaseMessage] = []
    records: list[tuple[int, FusionRecord]] = []
    for index, item in enumerate(raw):
        where = f"messages[{index}]"
        if not isinstance(item, dict):
            raise ApiError(400, f"{where} is not an object.")
        role = item.get("role")
        if role in ("system", "developer"):
            messages.append(SystemMessage(_text(item.get("content"), where)))
        elif role == "user":
            messages.append(HumanMessage(_text(item.get("content"), where)))
        elif role == "tool":
            call_id = item.get("tool_call_id")
            if not isinstance(call_id, str) or not call_id:
                raise ApiError(400, f"{where} is a tool message without tool_call_id.")
            messages.append(ToolMessage(_text(item.get("content"), where), tool_call_id=call_id))
        elif role == "assistant":
            for detail in item.get("reasoning_details") or []:
                record = isinstance(detail, dict) and _record_of_detail(detail, where)
                if record:
                    if replay:
                        messages.extend(_fusion_call(record))
                    records.append((len(messages), record))
            calls = []
            for number, call in enumerate(item.get("tool_calls") or []):
                function = (call or {}).get("function") or {}
                name = function.get("name")
                if not isinstance(name, str) or not name:
                    raise ApiError(400, f"{where}.tool_calls[{number}] has no function name.")
                args = _arguments(function.get("arguments"), f"{where}.tool_calls[{number}]")
                calls.append(
                    {"name": name, "args": args, "id": call.get("id"), "type": "tool_call"}
                )
            messages.append(AIMessage(_text(item.get("content"), where), tool_calls=calls))
        else:
            raise ApiError(
                400,
                f"{where}.role must be system, developer, user, assistant or tool; got {role!r}.",
            )
    return _conclude(messages, records)


def _record_of_item(item: Mapping[str, Any]) -> FusionRecord:
    """A Responses ``openrouter:fusion`` output item, sent back as input, as a record."""
    failed = []
    for entry in item.get("failed_models") or []:
        status = entry.get("status_code")
        reason = entry.get("failure_reason") or (
            reason_for_status(status) if isinstance(status, int) else "upstream_error"
        )
        failed.append({**entry, "failure_reason": reason})
    sources = [
        {"url": s.get("url"), "title": s.get("title")}
        for s in item.get("sources") or []
        if isinstance(s, dict) and s.get("url")
    ]
    data = {
        "status": "ok" if item.get("status") == "completed" else "error",
        "analysis": item.get("analysis"),
        "responses": [
            {"model": r.get("model"), "content": r.get("content") or ""}
            for r in item.get("responses") or []
        ],
        "failed_models": failed,
        "failure_reason": item.get("failure_reason"),
        "error": item.get("error"),
        "citations": sources,
    }
    try:
        result: FusionResult | None = FusionResult.model_validate(data)
    except ValidationError:
        result = None
    call_id = str(item.get("id") or f"fc_{uuid.uuid4().hex[:24]}")
    result_json = result.to_json() if result else json.dumps(data)
    return FusionRecord(call_id, "{}", result_json, result, executed=False)


def responses_conversation(raw: object, instructions: object, *, replay: bool) -> Conversation:
    """Read a Responses API ``input`` (a string or a list of items) and ``instructions``.

    Raises:
        ApiError: 400, naming the item that is not one.
    """
    messages: list[BaseMessage] = []
    if isinstance(instructions, str) and instructions.strip():
        messages.append(SystemMessage(instructions))
    if isinstance(raw, str):
        if not raw.strip():
            raise ApiError(400, "input is empty.")
        return Conversation(messages=[*messages, HumanMessage(raw)], recorded=None)
    if not isinstance(raw, list) or not raw:
        raise ApiError(400, "input must be a string or a non-empty array of input items.")
    records: list[tuple[int, FusionRecord]] = []
    for index, item in enumerate(raw):
        where = f"input[{index}]"
        if not isinstance(item, dict):
            raise ApiError(400, f"{where} is not an object.")
        kind = item.get("type", "message")
        if kind == "message":
            role = item.get("role")
            content = _text(item.get("content"), where)
            if role in ("system", "developer"):
                messages.append(SystemMessage(content))
            elif role == "user":
                messages.append(HumanMessage(content))
            elif role == "assistant":
                messages.append(AIMessage(content))
            else:
                raise ApiError(400, f"{where}.role must be user, assistant, system or developer.")
        elif kind == "function_call":
            name, call_id = item.get("name"), item.get("call_id")
            if not isinstance(name, str) or not isinstance(call_id, str):
                raise ApiError(400, f"{where} is a function_call without name or call_id.")
            call = {
                "name": name,
                "args": _arguments(item.get("arguments"), where),
                "id": call_id,
                "type": "tool_call",
            }
            last = messages[-1] if messages else None
            if isinstance(last, AIMessage) and last.tool_calls and not last.text:
                last.tool_calls.append(call)  # type: ignore[arg-type]
            else:
                messages.append(AIMessage("", tool_calls=[call]))
        elif kind == "function_call_output":
            call_id = item.get("call_id")
            if not isinstance(call_id, str):
                raise ApiError(400, f"{where} is a function_call_output without call_id.")
            output = item.get("output")
            text = output if isinstance(output, str) else json.dumps(output)
            messages.append(ToolMessage(text, tool_call_id=call_id))
        elif kind == SERVER_TOOL:
            record = _record_of_item(item)
            if replay:
                messages.extend(_fusion_call(record))
            records.append((len(messages), record))
        elif kind == "reasoning":
            continue  # a model's own reasoning summary: nothing to replay
        else:
            raise ApiError(400, f"{where}.type {kind!r} is not an input item this server reads.")
    return _conclude(messages, records)
