"""Quorum and grace, and fallback panelists, over the wire (the loopback server)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from typing import Any

import pytest
from langchain_core.messages import HumanMessage

from langfusion.graph import FusionContext, ModelRegistry, build_fusion_graph, result_markdown
from langfusion.tools import FusionTool
from tests.fakes import result_of, verdict
from tests.openai_server import OpenAIServer, Reply

QUESTION = "Is it worth replacing a 12-year-old gas boiler with a heat pump now?"


@pytest.fixture
def server(monkeypatch: pytest.MonkeyPatch) -> Iterator[OpenAIServer]:
    monkeypatch.setenv("OPENROUTER_API_KEY", "sk-or-test-quorum")
    with OpenAIServer() as running:
        running.script("p/1", "Yes, if the house is insulated.")
        running.script("p/2", "Only with a grant: payback is long.")
        running.script("judge/model", verdict())
        running.script("synth/model", "Yes with insulation and a grant.")
        yield running


async def fuse(server: OpenAIServer, panel: list[str], **kw: Any) -> dict[str, Any]:
    graph = build_fusion_graph(model_factory=ModelRegistry(base_url=server.base_url), web_tools=[])
    context = FusionContext(
        analysis_models=panel, model="judge/model", synthesis_model="synth/model", **kw
    )
    return await graph.ainvoke({"messages": [HumanMessage(QUESTION)]}, context=context)


async def closed(server: OpenAIServer, slug: str) -> bool:
    """Whether the server saw the client close ``slug``'s connection (it notices within ms)."""
    for _ in range(200):
        if server.requests_for(slug)[0].disconnected:
            return True
        await asyncio.sleep(0.01)
    return False


async def test_a_straggler_is_cut_once_the_quorum_is_in_and_its_grace_is_over(
    server: OpenAIServer,
) -> None:
    server.script("p/slow", Reply(hang=True))
    out = await fuse(
        server, ["p/1", "p/2", "p/slow"], min_responses=2, quorum_grace_s=0.2, timeout_s=60
    )
    result = result_of(out)
    assert result.status == "ok" and out["answer"]
    assert [r.model for r in result.responses] == ["p/1", "p/2"]
    [cut] = result.failed_models
    assert (cut.model, cut.failure_reason) == ("p/slow", "cut_after_quorum")
    assert "quorum_grace_s=0.2" in cut.error
    # Its call was cancelled: the connection closed, long before its 60 s deadline.
    assert await closed(server, "p/slow")
    judged = json.dumps(server.requests_for("judge/model")[0].body["messages"])
    assert "Yes, if the house is insulated." in judged and "payback is long" in judged


async def test_without_a_grace_every_panelist_runs_to_its_own_deadline(
    server: OpenAIServer,
) -> None:
    server.script("p/slow", Reply(hang=True))
    out = await fuse(server, ["p/1", "p/2", "p/slow"], min_responses=2, timeout_s=0.5)
    [late] = result_of(out).failed_models
    assert (late.model, late.failure_reason) == ("p/slow", "timeout")


async def test_an_answer_that_came_within_the_grace_is_kept(server: OpenAIServer) -> None:
    server.script("p/late", Reply("Wait for the next model year."), latency_s=0.3)
    out = await fuse(server, ["p/1", "p/late"], min_responses=1, quorum_grace_s=5)
    result = result_of(out)
    assert [r.model for r in result.responses] == ["p/1", "p/late"]
    assert result.failed_models == []


async def test_a_failed_panelist_is_replaced_by_a_fallback_the_judge_sees(
    server: OpenAIServer,
) -> None:
    server.script("p/down", Reply("no such model", status=404))
    server.script("f/spare", "A heat pump halves running costs in a mild climate.")
    out = await fuse(server, ["p/1", "p/down"], fallback_models=["p/1", "f/spare"])
    result = result_of(out)
    [down] = result.failed_models
    assert (down.model, down.failure_reason, down.replaced_by) == (
        "p/down",
        "model_not_found",
        "f/spare",  # p/1 is on the panel already: skipped
    )
    spare = [r for r in result.responses if r.model == "f/spare"]
    assert [r.fallback_for for r in spare] == ["p/down"]
    judged = json.dumps(server.requests_for("judge/model")[0].body["messages"])
    assert "halves running costs" in judged
    shown = result_markdown(result)
    assert "replaced by f/spare" in shown and "f/spare (for p/down)" in shown
    data = out["result"]
    assert data["failed_models"][0]["replaced_by"] == "f/spare"
    assert "fallback_for" not in data["responses"][0]  # additive: only on a fallback


async def test_each_fallback_is_used_once(server: OpenAIServer) -> None:
    server.script("p/down", Reply("gone", status=404))
    server.script("p/broken", Reply("boom", status=500))
    server.script("f/spare", "Replace it when it fails, not before.")
    out = await fuse(
        server, ["p/1", "p/down", "p/broken"], fallback_models=["f/spare"], max_retries=0
    )
    result = result_of(out)
    replaced = [f.replaced_by for f in result.failed_models]
    assert sorted(replaced, key=str) == [None, "f/spare"]  # one replaced, the other not
    assert len(server.requests_for("f/spare")) == 1


async def test_a_fallback_that_fails_is_replaced_in_turn(server: OpenAIServer) -> None:
    server.script("p/down", Reply("gone", status=404))
    server.script("f/also-down", Reply("gone too", status=404))
    server.script("f/spare", "Keep the boiler until it needs a major repair.")
    out = await fuse(server, ["p/1", "p/down"], fallback_models=["f/also-down", "f/spare"])
    result = result_of(out)
    assert [(f.model, f.replaced_by) for f in result.failed_models] == [
        ("p/down", "f/also-down"),
        ("f/also-down", "f/spare"),
    ]
    assert [(r.model, r.fallback_for) for r in result.responses] == [
        ("p/1", None),
        ("f/spare", "f/also-down"),
    ]


async def test_the_tool_takes_both_and_reports_them(server: OpenAIServer) -> None:
    server.script("p/down", Reply("gone", status=404))
    server.script("p/slow", Reply(hang=True))
    server.script("f/spare", "Insulate first; the heat pump second.")
    tool = FusionTool(
        analysis_models=["p/1", "p/down", "p/slow"],
        model="judge/model",
        model_factory=ModelRegistry(base_url=server.base_url),
        web_tools=False,
        min_responses=2,
        quorum_grace_s=0.2,
        fallback_models=["f/spare"],
    )
    message = await tool.ainvoke(
        {"name": "fusion", "args": {"prompt": QUESTION}, "id": "c1", "type": "tool_call"}
    )
    data = json.loads(message.content)
    assert data["status"] == "ok"
    reasons = {
        f["model"]: (f["failure_reason"], f.get("replaced_by")) for f in data["failed_models"]
    }
    assert reasons == {
        "p/down": ("model_not_found", "f/spare"),
        "p/slow": ("cut_after_quorum", None),
    }
    assert await closed(server, "p/slow")
