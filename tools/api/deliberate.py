"""One fusion run for the API: the graph's stream told as events, then its result."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from typing import Any, cast

from langchain_core.runnables import RunnableConfig

from langfusion.graph import (
    FusionContext,
    FusionGraph,
    FusionInput,
    FusionResult,
    PanelResponse,
)
from langfusion.tools.alias.run import AnswerText
from langfusion.tools.api.errors import ApiError
from langfusion.tools.api.events import AnalysisStarted, PanelEvent, Text

__all__ = ["Deliberated", "deliberate"]

# Panel text is sent in pieces of about this size or age, not one event per token.
PANEL_DELTA_CHARS = 256
PANEL_DELTA_S = 0.25


@dataclass(frozen=True)
class Deliberated:
    """How the run ended: its result, its answer, and the synthesis's own tool calls."""

    result: FusionResult
    answer: str
    tool_calls: list[dict[str, Any]]


@dataclass
class _PanelText:
    """Panel tokens, held per model until there is a piece worth an event."""

    held: dict[str, str] = field(default_factory=dict)
    sent_at: dict[str, float] = field(default_factory=dict)

    def add(self, model: str, text: str) -> str:
        self.held[model] = self.held.get(model, "") + text
        now = time.monotonic()
        waited = now - self.sent_at.setdefault(model, now)
        if len(self.held[model]) >= PANEL_DELTA_CHARS or waited >= PANEL_DELTA_S:
            return self.flush(model)
        return ""

    def flush(self, model: str) -> str:
        self.sent_at[model] = time.monotonic()
        return self.held.pop(model, "")


async def deliberate(
    graph: FusionGraph,
    inputs: Mapping[str, Any],
    context: FusionContext,
    config: RunnableConfig | None = None,
) -> AsyncIterator[Text | PanelEvent | AnalysisStarted | Deliberated]:
    """Run the pipeline; yield its progress, the synthesis's text, then how it ended.

    Panel text comes only where ``context.stream_panel_tokens`` asks for it.

    Raises:
        ApiError: The synthesis was cut midway and its retry wrote a different
            answer, so the text already streamed is not the answer (502).
    """
    panel = _PanelText()
    answer = AnswerText()
    final: dict[str, Any] = {}
    calls: list[dict[str, Any]] = []
    async for item in graph.astream(
        cast(FusionInput, dict(inputs)),
        config,
        context=context,
        stream_mode=["custom", "messages", "updates", "values"],
    ):
        mode, payload = cast(tuple[str, Any], item)
        if mode == "custom" and isinstance(payload, dict):
            event = payload.get("event")
            model = str(payload.get("model") or "")
            if event == "panel_started":
                yield PanelEvent("added", model)
            elif event == "panel_failed":
                if held := panel.flush(model):
                    yield PanelEvent("delta", model, held)
                status = payload.get("status_code")
                error = str(payload.get("error") or payload.get("reason") or "failed")
                yield PanelEvent(
                    "failed", model, error, status if isinstance(status, int) else None
                )
            elif event == "judge_started":
                yield AnalysisStarted(model)
            elif event == "synthesis_started":
                answer.restart()
        elif mode == "messages":
            chunk, metadata = payload
            node = metadata.get("langgraph_node")
            if node == "analyze" and (model := metadata.get("fusion_model")):
                if piece := panel.add(str(model), chunk.text):
                    yield PanelEvent("delta", str(model), piece)
            elif node == "synthesize" and (new := answer.add(chunk.text)):
                yield Text(new)
        elif mode == "updates" and isinstance(payload, dict):
            for node, update in payload.items():
                if not isinstance(update, dict):
                    continue
                if node == "analyze":
                    for raw in update.get("responses") or []:
                        response = PanelResponse.model_validate(raw)
                        if held := panel.flush(response.model):
                            yield PanelEvent("delta", response.model, held)
                        yield PanelEvent("completed", response.model, response.content)
                elif node == "synthesize" and update.get("messages"):
                    calls = list(getattr(update["messages"][-1], "tool_calls", None) or [])
        elif mode == "values":
            final = payload
    raw = final.get("result")
    if raw is None:
        raise RuntimeError("the fusion run ended without a result")
    result = FusionResult.model_validate(raw)
    text = str(final.get("answer") or "")
    if text.startswith(answer.sent):
        if rest := text[len(answer.sent) :]:
            yield Text(rest)
    else:
        raise ApiError(
            502,
            "synthesis_failed: the answer's stream was cut midway and its retry wrote a "
            "different answer; ask again without stream for the whole answer.",
        )
    yield Deliberated(result, text, calls)
