"""What a request's run tells as it goes, whichever API and framing renders it.

The loop yields these; ``chat`` and ``responses`` turn them into their own
bodies and stream events.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from langfusion.graph.schema import FusionResult, Usage
from langfusion.tools.api.messages import FusionRecord

__all__ = [
    "AnalysisStarted",
    "Event",
    "Finished",
    "FusionFinished",
    "FusionStarted",
    "Outcome",
    "PanelEvent",
    "Tally",
    "Text",
    "call_view",
    "citations_of",
]


@dataclass(frozen=True)
class Text:
    """A piece of the answer."""

    text: str


@dataclass(frozen=True)
class FusionStarted:
    """A fusion call begins (the calling model called the tool, or the alias runs)."""

    call_id: str
    arguments: str


@dataclass(frozen=True)
class PanelEvent:
    """A panel model was asked, wrote some text, answered, or failed."""

    kind: Literal["added", "delta", "completed", "failed"]
    model: str
    text: str = ""
    status_code: int | None = None


@dataclass(frozen=True)
class AnalysisStarted:
    """The judge started comparing the answers."""

    model: str


@dataclass(frozen=True)
class FusionFinished:
    """A fusion call ended; its record is what the calling model read."""

    record: FusionRecord


@dataclass
class Tally:
    """Tokens and cost over every call a request made, outer and inner, and its fusion calls."""

    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost: float | None = None
    requested: int = 0
    executed: int = 0

    def add(self, usage: Usage | None) -> None:
        """Count one or more calls' usage."""
        if usage is None:
            return
        self.prompt_tokens += usage.input_tokens
        self.completion_tokens += usage.output_tokens
        if usage.cost is not None:
            self.cost = (self.cost or 0.0) + usage.cost

    def chat(self, fusion: bool) -> dict[str, Any]:
        """``usage`` of a chat completion."""
        usage: dict[str, Any] = {
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "total_tokens": self.prompt_tokens + self.completion_tokens,
        }
        if self.cost is not None:
            usage["cost"] = round(self.cost, 10)
        if fusion:
            usage["server_tool_use_details"] = self.tool_use()
        return usage

    def responses(self, fusion: bool) -> dict[str, Any]:
        """``usage`` of a Responses API response."""
        usage: dict[str, Any] = {
            "input_tokens": self.prompt_tokens,
            "input_tokens_details": {"cached_tokens": 0},
            "output_tokens": self.completion_tokens,
            "output_tokens_details": {"reasoning_tokens": 0},
            "total_tokens": self.prompt_tokens + self.completion_tokens,
        }
        if self.cost is not None:
            usage["cost"] = round(self.cost, 10)
        if fusion:
            usage["server_tool_use_details"] = self.tool_use()
        return usage

    def tool_use(self) -> dict[str, int]:
        """``server_tool_use_details``: fusion calls the model made, and those the server ran."""
        return {"tool_calls_requested": self.requested, "tool_calls_executed": self.executed}


@dataclass
class Outcome:
    """How a request ended.

    Attributes:
        text: The answer.
        tool_calls: The client's own tools the model called, as
            ``{"id", "name", "arguments"}`` (arguments as JSON text).
        finish_reason: ``stop``, ``tool_calls``, ``length`` or ``content_filter``.
        model: The concrete model that wrote the answer.
        usage: Every call of the request, totalled.
        records: The fusion calls, in order.
        citations: ``{"url", "title"}`` of every page the answer may cite.
        fusion: Whether fusion was offered or forced (usage then details the tool's use).
    """

    text: str
    tool_calls: list[dict[str, str]]
    finish_reason: str
    model: str
    usage: Tally
    records: list[FusionRecord] = field(default_factory=list)
    citations: list[dict[str, str]] = field(default_factory=list)
    fusion: bool = False


@dataclass(frozen=True)
class Finished:
    """The run ended with ``outcome``."""

    outcome: Outcome


Event = Text | FusionStarted | PanelEvent | AnalysisStarted | FusionFinished | Finished


def call_view(call: Mapping[str, Any]) -> dict[str, str]:
    """A LangChain tool call as the client sees it: id, name, arguments as JSON text."""
    return {
        "id": str(call.get("id") or f"call_{uuid.uuid4().hex[:24]}"),
        "name": str(call["name"]),
        "arguments": json.dumps(call.get("args") or {}, ensure_ascii=False),
    }


def citations_of(result: FusionResult | None) -> list[dict[str, str]]:
    """The pages a fusion's panel and judge cited, as ``{"url", "title"}``."""
    if result is None:
        return []
    return [{"url": c.url, "title": c.title or c.url} for c in result.citations]
