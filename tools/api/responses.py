"""The Responses API: a run told as a ``response`` object or as its stream of events.

A fusion is an ``openrouter:fusion`` output item placed before the message;
streamed, it is told by OpenRouter's ``response.fusion_call.*`` events.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from langfusion.tools.api.errors import ApiError, unexpected
from langfusion.tools.api.events import (
    AnalysisStarted,
    Event,
    Finished,
    FusionFinished,
    FusionStarted,
    Outcome,
    PanelEvent,
    Text,
)
from langfusion.tools.api.messages import SERVER_TOOL, FusionRecord
from langfusion.tools.api.request import Turn
from langfusion.tools.api.stream import KEEPALIVE, data_frame, ticking

__all__ = ["ResponseShape", "response_frames"]

_KEEPALIVE_FRAME = ": OPENROUTER PROCESSING\n\n"
_ERROR_CODES = {429: "rate_limit_exceeded", 400: "invalid_prompt", 403: "permission_denied"}


def _new_id(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex}"


def fusion_item(record: FusionRecord | None, item_id: str) -> dict[str, Any]:
    """The ``openrouter:fusion`` output item (``in_progress`` while there is no record)."""
    item: dict[str, Any] = {"type": SERVER_TOOL, "id": item_id, "status": "in_progress"}
    if record is None:
        return item
    result = record.result
    if result is None:  # a capped call: its tool result says why
        told = json.loads(record.result_json)
        return item | {
            "status": "incomplete",
            "error": str(told.get("error") or ""),
            "failure_reason": str(told.get("failure_reason") or ""),
        }
    item["status"] = "completed" if result.status == "ok" else "incomplete"
    if result.analysis is not None:
        item["analysis"] = result.analysis.model_dump(mode="json")
    item["responses"] = [{"model": r.model, "content": r.content} for r in result.responses]
    item["failed_models"] = [f.model_dump(mode="json") for f in result.failed_models]
    if result.failure_reason:
        item["failure_reason"] = result.failure_reason
    if result.error:
        item["error"] = result.error
    item["sources"] = [{"title": c.title or c.url, "url": c.url} for c in result.citations]
    return item


def _message_item(item_id: str, text: str, outcome: Outcome | None) -> dict[str, Any]:
    done = outcome is not None
    part = _text_part(text, outcome)
    return {
        "type": "message",
        "id": item_id,
        "role": "assistant",
        "status": "completed" if done else "in_progress",
        "content": [part] if done else [],
    }


def _text_part(text: str, outcome: Outcome | None) -> dict[str, Any]:
    citations = outcome.citations if outcome is not None else []
    annotations = [
        {"type": "url_citation", "url": c["url"], "title": c["title"], "start_index": 0,
         "end_index": 0}
        for c in citations
    ]  # fmt: skip
    return {"type": "output_text", "text": text, "annotations": annotations, "logprobs": []}


def _call_item(call: dict[str, str], done: bool) -> dict[str, Any]:
    return {
        "type": "function_call",
        "id": f"fc_{call['id']}",
        "call_id": call["id"],
        "name": call["name"],
        "arguments": call["arguments"] if done else "",
        "status": "completed" if done else "in_progress",
    }


@dataclass
class ResponseShape:
    """The ``response`` object of one request, as it stands."""

    turn: Turn
    tool_choice: Any
    id: str = field(default_factory=lambda: _new_id("resp"))
    created: int = field(default_factory=lambda: int(time.time()))

    def body(
        self,
        status: str,
        output: list[dict[str, Any]],
        outcome: Outcome | None = None,
        error: ApiError | None = None,
    ) -> dict[str, Any]:
        """The object in ``status``, with ``output`` (and usage once there is an outcome)."""
        choice = self.tool_choice
        tools = [
            {"type": "function", "name": t["function"]["name"],
             "description": t["function"].get("description"),
             "parameters": t["function"].get("parameters") or {},
             "strict": t["function"].get("strict")}
            for t in self.turn.tools
        ]  # fmt: skip
        body: dict[str, Any] = {
            "id": self.id,
            "object": "response",
            "created_at": self.created,
            "completed_at": int(time.time()) if status == "completed" else None,
            "status": status,
            "model": outcome.model if outcome else self.turn.model,
            "output": output,
            "error": None,
            "incomplete_details": None,
            "instructions": None,
            "metadata": None,
            "temperature": self.turn.settings.get("temperature"),
            "top_p": None,
            "frequency_penalty": None,
            "presence_penalty": None,
            "parallel_tool_calls": True,
            "tool_choice": choice if choice in ("auto", "none", "required") else "auto",
            "tools": tools,
        }
        if outcome is not None:
            body["output_text"] = outcome.text
            body["usage"] = outcome.usage.responses(outcome.fusion)
        if error is not None:
            code = _ERROR_CODES.get(error.status, "server_error")
            body["error"] = {"code": code, "message": error.message}
        return body

    def whole(self, outcome: Outcome) -> dict[str, Any]:
        """The whole response of a finished run."""
        output = [fusion_item(r, f"fu_{r.call_id}") for r in outcome.records]
        if outcome.text or not outcome.tool_calls:
            output.append(_message_item(_new_id("msg"), outcome.text, outcome))
        output += [_call_item(c, True) for c in outcome.tool_calls]
        return self.body("completed", output, outcome)


@dataclass
class _Writer:
    """Numbers the events of one stream and keeps the output items as they close."""

    shape: ResponseShape
    sequence: int = 0
    output: list[dict[str, Any]] = field(default_factory=list)
    fusion_id: str = ""
    message_id: str = ""
    text: str = ""

    def event(self, kind: str, **fields: Any) -> str:
        payload = {"type": kind, "sequence_number": self.sequence, **fields}
        self.sequence += 1
        return data_frame(payload, kind)

    def fusion(self, kind: str, **fields: Any) -> str:
        index = len(self.output)
        return self.event(kind, item_id=self.fusion_id, output_index=index, **fields)

    def open_message(self) -> list[str]:
        self.message_id = _new_id("msg")
        index = len(self.output)
        return [
            self.event(
                "response.output_item.added",
                output_index=index,
                item=_message_item(self.message_id, "", None),
            ),
            self.event(
                "response.content_part.added",
                item_id=self.message_id,
                output_index=index,
                content_index=0,
                part=_text_part("", None),
            ),
        ]

    def close_message(self, outcome: Outcome) -> list[str]:
        index = len(self.output)
        item = _message_item(self.message_id, self.text, outcome)
        self.output.append(item)
        where = {"item_id": self.message_id, "output_index": index, "content_index": 0}
        return [
            self.event("response.output_text.done", **where, text=self.text, logprobs=[]),
            self.event("response.content_part.done", **where, part=item["content"][0]),
            self.event("response.output_item.done", output_index=index, item=item),
        ]


async def response_frames(
    events: AsyncIterator[Event], shape: ResponseShape, keepalive_s: float
) -> AsyncIterator[str]:
    """The SSE frames of a streamed response, from ``response.created`` to its end."""
    out = _Writer(shape)
    yield out.event("response.created", response=shape.body("in_progress", []))
    yield out.event("response.in_progress", response=shape.body("in_progress", []))
    try:
        async for event in ticking(events, keepalive_s):
            if event is KEEPALIVE:
                yield _KEEPALIVE_FRAME
            elif isinstance(event, FusionStarted):
                out.fusion_id = f"fu_{event.call_id}"
                item = fusion_item(None, out.fusion_id)
                yield out.event(
                    "response.output_item.added", output_index=len(out.output), item=item
                )
                yield out.fusion("response.fusion_call.in_progress")
            elif isinstance(event, PanelEvent):
                yield _panel_frame(out, event)
            elif isinstance(event, AnalysisStarted):
                yield out.fusion(
                    "response.fusion_call.analysis.in_progress",
                    analyst_model=event.model,
                    judge_model=event.model,
                )
            elif isinstance(event, FusionFinished):
                item = fusion_item(event.record, out.fusion_id)
                if "analysis" in item:
                    yield out.fusion(
                        "response.fusion_call.analysis.completed", analysis=item["analysis"]
                    )
                yield out.fusion("response.fusion_call.completed")
                index = len(out.output)
                out.output.append(item)
                yield out.event("response.output_item.done", output_index=index, item=item)
            elif isinstance(event, Text):
                if not out.message_id:
                    for frame in out.open_message():
                        yield frame
                out.text += event.text
                yield out.event(
                    "response.output_text.delta",
                    item_id=out.message_id,
                    output_index=len(out.output),
                    content_index=0,
                    delta=event.text,
                    logprobs=[],
                )
            elif isinstance(event, Finished):
                for frame in _finish(out, event.outcome):
                    yield frame
    except Exception as exc:  # the stream has begun: a failure is its last event
        error = exc if isinstance(exc, ApiError) else unexpected(exc)
        yield out.event("response.failed", response=shape.body("failed", out.output, error=error))


def _panel_frame(out: _Writer, event: PanelEvent) -> str:
    kind = f"response.fusion_call.panel.{event.kind}"
    if event.kind == "delta":
        return out.fusion(kind, model=event.model, delta=event.text)
    if event.kind == "completed":
        return out.fusion(kind, model=event.model, content=event.text)
    if event.kind == "failed":
        extra = {} if event.status_code is None else {"status_code": event.status_code}
        return out.fusion(kind, model=event.model, error=event.text, **extra)
    return out.fusion(kind, model=event.model)


def _finish(out: _Writer, outcome: Outcome) -> list[str]:
    frames: list[str] = []
    if out.message_id or not outcome.tool_calls:
        if not out.message_id:
            frames += out.open_message()
        frames += out.close_message(outcome)
    for call in outcome.tool_calls:
        index = len(out.output)
        item = _call_item(call, True)
        frames.append(
            out.event(
                "response.output_item.added", output_index=index, item=_call_item(call, False)
            )
        )
        where = {"item_id": item["id"], "output_index": index}
        frames.append(
            out.event("response.function_call_arguments.delta", **where, delta=call["arguments"])
        )
        frames.append(
            out.event(
                "response.function_call_arguments.done",
                **where,
                name=call["name"],
                arguments=call["arguments"],
            )
        )
        out.output.append(item)
        frames.append(out.event("response.output_item.done", output_index=index, item=item))
    completed = out.shape.body("completed", out.output, outcome)
    frames.append(out.event("response.completed", response=completed))
    return frames
