"""What a caller sees while a fusion runs: progress events and the synthesis, token by token."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import aclosing
from typing import Any

import pytest
from langchain_core.messages import HumanMessage

from langfusion.graph import FusionContext, ModelRegistry, build_fusion_graph
from tests.fakes import verdict
from tests.openai_server import OpenAIServer, Reply

QUESTION = "Should a small team pick Postgres or DynamoDB for a ledger?"
ANSWER = "Postgres: transactions and constraints matter more than scale here."
PANEL_ANSWER = "Postgres, for multi-row transactions."
PANEL_EVENTS = ("panel_started", "panel_finished", "panel_failed")


@pytest.fixture
def server(monkeypatch: pytest.MonkeyPatch) -> Iterator[OpenAIServer]:
    monkeypatch.setenv("OPENROUTER_API_KEY", "sk-or-test-0123456789")
    with OpenAIServer() as running:
        running.script("p/fast", PANEL_ANSWER)
        running.script("p/slow", "DynamoDB, if the access patterns are fixed.", latency_s=0.5)
        running.script("p/broken", Reply("unknown parameter: temperature", status=400))
        running.script("judge/model", verdict())
        running.script("synth/model", ANSWER)
        yield running


async def stream(server: OpenAIServer, panel: list[str], modes: list[str]) -> list[tuple[str, Any]]:
    """Every streamed item, in the order it arrived."""
    graph = build_fusion_graph(model_factory=ModelRegistry(base_url=server.base_url), web_tools=[])
    context = FusionContext(
        analysis_models=panel, model="judge/model", synthesis_model="synth/model"
    )
    return [
        (mode, payload)
        async for mode, payload in graph.astream(
            {"messages": [HumanMessage(QUESTION)]}, context=context, stream_mode=modes
        )
    ]


def events(items: list[tuple[str, Any]]) -> list[dict[str, Any]]:
    return [payload for mode, payload in items if mode == "custom"]


def tokens(items: list[tuple[str, Any]]) -> list[tuple[Any, dict[str, Any]]]:
    """The (message chunk, metadata) pairs of the "messages" stream."""
    return [payload for mode, payload in items if mode == "messages"]


def position(seen: list[dict[str, Any]], event: str, model: str | None = None) -> int:
    (index,) = [
        i for i, e in enumerate(seen) if e["event"] == event and model in (None, e.get("model"))
    ]
    return index


async def test_progress_events_arrive_in_order_and_as_they_happen(server: OpenAIServer) -> None:
    items = await stream(server, ["p/fast", "p/slow", "p/broken"], ["custom"])
    seen = events(items)
    for model in ("p/fast", "p/slow"):
        assert position(seen, "panel_started", model) < position(seen, "panel_finished", model)
    assert position(seen, "panel_started", "p/broken") < position(seen, "panel_failed", "p/broken")
    last_panel_event = max(i for i, e in enumerate(seen) if e["event"] in PANEL_EVENTS)
    assert (
        last_panel_event
        < position(seen, "judge_started")
        < position(seen, "judge_finished")
        < position(seen, "synthesis_started")
        == len(seen) - 1
    )

    fast, slow = (seen[position(seen, "panel_finished", m)] for m in ("p/fast", "p/slow"))
    assert fast["tokens"] == slow["tokens"] == 7  # as the server counted them
    assert fast["seconds"] > 0 and slow["seconds"] > 0
    (failed,) = [e for e in seen if e["event"] == "panel_failed"]
    assert failed["reason"] == "invalid_request" and "unknown parameter" in failed["error"]
    assert seen[position(seen, "judge_started")]["model"] == "judge/model"
    assert seen[position(seen, "judge_finished")]["ok"] is True
    assert seen[position(seen, "synthesis_started")]["model"] == "synth/model"


async def test_a_panel_answer_is_reported_while_another_model_is_still_working(
    server: OpenAIServer,
) -> None:
    server.script("p/slow", Reply(hang=True))  # answers nothing until the client goes away
    graph = build_fusion_graph(model_factory=ModelRegistry(base_url=server.base_url), web_tools=[])
    # The deadline only bounds how long a broken stream that holds events back would take.
    context = FusionContext(analysis_models=["p/fast", "p/slow"], model="judge/model", timeout_s=30)
    seen: list[tuple[str, str | None]] = []
    events = graph.astream(
        {"messages": [HumanMessage(QUESTION)]}, context=context, stream_mode="custom"
    )
    async with aclosing(events):
        async for event in events:
            seen.append((event["event"], event.get("model")))
            if seen[-1] == ("panel_finished", "p/fast"):
                # Reported live: the slow model's call is still open, unanswered.
                slow = server.requests_for("p/slow")
                assert not [r for r in slow if r.finished or r.disconnected]
                break
    assert seen[-1] == ("panel_finished", "p/fast")
    assert not [event for event, model in seen if model == "p/slow" and event != "panel_started"]


@pytest.mark.parametrize(
    ("judge_reply", "reason", "attempts"),
    [
        (Reply("I think they mostly agree."), "judge_not_valid_json", 1),
        (Reply("upstream broke", status=502), "judge_upstream_error", 3),  # client retries
    ],
)
async def test_a_failed_judge_is_reported_and_the_synthesis_still_starts(
    server: OpenAIServer, judge_reply: Reply, reason: str, attempts: int
) -> None:
    server.script("judge/model", judge_reply)
    seen = events(await stream(server, ["p/fast"], ["custom"]))
    kinds = [e["event"] for e in seen]
    assert len(server.requests_for("judge/model")) == attempts
    assert kinds == [
        "panel_started",
        "panel_finished",
        "judge_started",  # once: the retries happen inside the one judge call
        "judge_finished",
        "synthesis_started",
    ]
    finished = seen[kinds.index("judge_finished")]
    assert finished["ok"] is False and finished["failure_reason"] == reason


async def test_when_every_panel_model_fails_no_judge_or_synthesis_events_follow(
    server: OpenAIServer,
) -> None:
    server.script("p/also-broken", Reply("no credits", status=402))
    items = await stream(server, ["p/broken", "p/also-broken"], ["custom", "messages"])
    seen = events(items)
    assert sorted(e["event"] for e in seen) == ["panel_failed"] * 2 + ["panel_started"] * 2
    assert {e["model"]: e["reason"] for e in seen if e["event"] == "panel_failed"} == {
        "p/broken": "invalid_request",
        "p/also-broken": "insufficient_credits",
    }
    assert tokens(items) == []
    assert not server.requests_for("judge/model") and not server.requests_for("synth/model")


async def test_synthesis_tokens_stream_and_panel_and_judge_output_does_not(
    server: OpenAIServer,
) -> None:
    items = await stream(server, ["p/fast", "p/slow"], ["messages", "custom"])
    messages = tokens(items)
    synthesis = [chunk.text for chunk, meta in messages if meta["langgraph_node"] == "synthesize"]
    assert len([t for t in synthesis if t]) >= 5  # word by word, as the server sent them
    assert "".join(synthesis) == ANSWER
    streamed = " ".join(chunk.text for chunk, _ in messages)
    assert PANEL_ANSWER not in streamed and "DynamoDB" not in streamed
    assert "consensus" not in streamed and "Response A" not in streamed
    assert {meta["langgraph_node"] for _, meta in messages} <= {"synthesize", "report"}

    assert server.requests_for("synth/model")[0].body["stream"] is True
    for model in ("p/fast", "p/slow", "judge/model"):
        assert server.requests_for(model)[0].body.get("stream") is not True


async def test_the_messages_stream_carries_the_answer_exactly_once(server: OpenAIServer) -> None:
    items = await stream(server, ["p/fast"], ["messages"])
    assert "".join(chunk.text for chunk, _ in tokens(items)) == ANSWER
    assert len({chunk.id for chunk, _ in tokens(items)}) == 1  # one message, not two
