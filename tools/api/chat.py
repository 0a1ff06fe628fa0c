"""Chat Completions: a run told as a ``chat.completion`` or as ``chat.completion.chunk`` events."""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

from langfusion.tools.api.errors import ApiError, unexpected
from langfusion.tools.api.events import Event, Finished, FusionFinished, Outcome, Text
from langfusion.tools.api.stream import KEEPALIVE, data_frame, ticking

__all__ = ["FINGERPRINT", "completion", "completion_frames"]

# OpenRouter's SDKs require the field; it names this server, not a model build.
FINGERPRINT = "fp_langfusion"
# What OpenRouter itself sends while a server tool works (an SSE comment).
KEEPALIVE_FRAME = ": OPENROUTER PROCESSING\n\n"


def _annotations(outcome: Outcome) -> list[dict[str, Any]]:
    return [
        {
            "type": "url_citation",
            "url_citation": {
                "url": c["url"],
                "title": c["title"],
                "start_index": 0,
                "end_index": 0,
            },
        }
        for c in outcome.citations
    ]


def _tool_calls(outcome: Outcome) -> list[dict[str, Any]]:
    return [
        {
            "id": call["id"],
            "type": "function",
            "function": {"name": call["name"], "arguments": call["arguments"]},
        }
        for call in outcome.tool_calls
    ]


def completion(outcome: Outcome) -> dict[str, Any]:
    """The whole ``chat.completion`` body of a run."""
    message: dict[str, Any] = {
        "role": "assistant",
        "content": outcome.text if outcome.text or not outcome.tool_calls else None,
    }
    if outcome.tool_calls:
        message["tool_calls"] = _tool_calls(outcome)
    if outcome.records:
        message["reasoning_details"] = [r.detail(i) for i, r in enumerate(outcome.records)]
    if outcome.citations:
        message["annotations"] = _annotations(outcome)
    return {
        "id": f"gen-{uuid.uuid4().hex}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": outcome.model,
        "system_fingerprint": FINGERPRINT,
        "choices": [{"index": 0, "message": message, "finish_reason": outcome.finish_reason}],
        "usage": outcome.usage.chat(outcome.fusion),
    }


class _Chunks:
    """Chunks of one streamed completion: same id, same creation time."""

    def __init__(self, model: str) -> None:
        self.id = f"gen-{uuid.uuid4().hex}"
        self.created = int(time.time())
        self.model = model

    def frame(
        self,
        delta: dict[str, Any] | None,
        finish: str | None = None,
        **extra: Any,
    ) -> str:
        chunk: dict[str, Any] = {
            "id": self.id,
            "object": "chat.completion.chunk",
            "created": self.created,
            "model": self.model,
            "system_fingerprint": FINGERPRINT,
            "choices": []
            if delta is None
            else [{"index": 0, "delta": delta, "finish_reason": finish}],
            **extra,
        }
        return data_frame(chunk)


async def completion_frames(
    events: AsyncIterator[Event], model: str, keepalive_s: float
) -> AsyncIterator[str]:
    """The SSE frames of a streamed completion, ``data: [DONE]`` last.

    Keep-alive comments go out while nothing else does (the panel works); a
    failure after the stream began is a last chunk with ``error`` and
    ``finish_reason: "error"``.
    """
    chunks = _Chunks(model)
    yield chunks.frame({"role": "assistant", "content": ""})
    records = 0
    try:
        async for event in ticking(events, keepalive_s):
            if event is KEEPALIVE:
                yield KEEPALIVE_FRAME
            elif isinstance(event, Text):
                yield chunks.frame({"content": event.text})
            elif isinstance(event, FusionFinished):
                detail = event.record.detail(records)
                records += 1
                yield chunks.frame({"reasoning_details": [detail]})
            elif isinstance(event, Finished):
                outcome = event.outcome
                chunks.model = outcome.model
                delta: dict[str, Any] = {}
                if outcome.tool_calls:
                    delta["tool_calls"] = [
                        {"index": i, **call} for i, call in enumerate(_tool_calls(outcome))
                    ]
                if outcome.citations:
                    delta["annotations"] = _annotations(outcome)
                yield chunks.frame(delta, outcome.finish_reason)
                yield chunks.frame(None, usage=outcome.usage.chat(outcome.fusion))
    except Exception as exc:  # the stream has begun: a failure is its last chunk
        error = exc if isinstance(exc, ApiError) else unexpected(exc)
        yield chunks.frame({"content": ""}, "error", error=error.body()["error"])
    yield "data: [DONE]\n\n"
