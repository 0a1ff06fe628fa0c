"""The alias (``model: "openrouter/fusion"``): the whole pipeline answers.

The panel and the judge run first (or, on an agent loop's next step, the
conversation's recorded analysis stands in for them); the synthesis then
writes the answer from that analysis, streamed, with the client's own tools
bound to it alone. Both steps are runs of the same graph: the second reuses
the first's result.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from typing import Any

from langchain_core.messages import HumanMessage

from langfusion.graph import FusionContext, FusionGraph, FusionResult
from langfusion.tools.api.deliberate import Deliberated, deliberate
from langfusion.tools.api.errors import alias_failure
from langfusion.tools.api.events import (
    Event,
    Finished,
    FusionFinished,
    FusionStarted,
    Outcome,
    Tally,
    Text,
    call_view,
    citations_of,
)
from langfusion.tools.api.messages import FusionRecord
from langfusion.tools.api.request import Plan

__all__ = ["alias_events"]


async def alias_events(graph: FusionGraph, plan: Plan) -> AsyncIterator[Event]:
    """The alias's run: panel and judge (or the recorded analysis), then the synthesis."""
    turn = plan.turn
    context = plan.context
    assert context is not None
    tally = Tally(requested=1)
    recorded = turn.recorded if turn.conversation.ends_with_tool_result else None
    question = next((m.text for m in reversed(turn.messages) if isinstance(m, HumanMessage)), "")
    call_id = recorded.call_id if recorded else f"call_{uuid.uuid4().hex[:24]}"
    arguments = recorded.arguments if recorded else json.dumps({"prompt": question})
    yield FusionStarted(call_id, arguments)
    if recorded is not None and recorded.result is not None:
        analysis = recorded.result
        record = FusionRecord(call_id, arguments, recorded.result_json, analysis, False)
    else:
        found: FusionResult | None = None
        inputs = {"messages": turn.messages, "depth": turn.depth}
        async for told in deliberate(graph, inputs, context):
            if isinstance(told, Deliberated):
                found = told.result
            elif not isinstance(told, Text):
                yield told
        assert found is not None
        tally.executed = 1
        tally.add(found.usage.total)
        if found.status != "ok":
            raise alias_failure(found)
        analysis = found
        record = FusionRecord(call_id, arguments, found.to_json(), found, True)
    yield FusionFinished(record)
    async for event in _write(graph, plan, record, tally):
        yield event


async def _write(
    graph: FusionGraph, plan: Plan, record: FusionRecord, tally: Tally
) -> AsyncIterator[Event]:
    """The alias's answer: the synthesis from the recorded analysis, streamed."""
    turn = plan.turn
    analysis = record.result
    assert plan.context is not None
    context = FusionContext.from_parameters(
        {**plan.context.settings(), "synthesize": True, "stream_panel_tokens": False},
        owner="fusion",
    )
    options: dict[str, Any] = {}
    if turn.tools:
        options["tools"] = turn.tools
        if turn.tool_choice is not None:
            options["tool_choice"] = turn.tool_choice
    for key in ("parallel_tool_calls", "response_format", "stop"):
        if turn.options.get(key) is not None:
            value = turn.options[key]
            options[key] = [value] if key == "stop" and isinstance(value, str) else value
    if turn.settings.get("max_tokens"):
        options["max_tokens"] = turn.settings["max_tokens"]
    inputs: dict[str, Any] = {"messages": turn.messages, "depth": turn.depth}
    inputs["reuse"] = analysis
    if options:
        inputs["synthesis_options"] = options
    ended: Deliberated | None = None
    async for event in deliberate(graph, inputs, context):
        if isinstance(event, Deliberated):
            ended = event
        elif isinstance(event, Text):
            yield event
    assert ended is not None
    written = ended.result
    tally.add(written.usage.synthesis)
    if written.status != "ok" or written.failure_reason == "synthesis_failed":
        raise alias_failure(written)
    calls = [call_view(c) for c in ended.tool_calls]
    yield Finished(
        Outcome(
            text=ended.answer,
            tool_calls=calls,
            finish_reason="tool_calls" if calls else "stop",
            model=context.synthesizer,
            usage=tally,
            records=[record],
            citations=citations_of(analysis),
            fusion=True,
        )
    )
