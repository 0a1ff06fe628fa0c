"""A completion cut at its token cap is marked, never passed off as whole, over the wire."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from langchain_core.messages import HumanMessage

from langfusion.graph import FusionContext, ModelRegistry, build_fusion_graph, result_markdown
from tests.fakes import result_of, verdict
from tests.openai_server import OpenAIServer, Reply

QUESTION = "What should a first-time landlord check before signing a tenant?"


@pytest.fixture
def server(monkeypatch: pytest.MonkeyPatch) -> Iterator[OpenAIServer]:
    monkeypatch.setenv("OPENROUTER_API_KEY", "sk-or-test-truncation")
    with OpenAIServer() as running:
        running.script("judge/model", verdict())
        yield running


async def fuse(server: OpenAIServer, **kw: object) -> dict[str, object]:
    graph = build_fusion_graph(model_factory=ModelRegistry(base_url=server.base_url), web_tools=[])
    context = FusionContext(
        analysis_models=["p/one", "p/two"],
        model="judge/model",
        synthesis_model="synth/model",
        **kw,  # type: ignore[arg-type]
    )
    return await graph.ainvoke({"messages": [HumanMessage(QUESTION)]}, context=context)


@pytest.mark.parametrize("streamed", [False, True], ids=["whole", "streamed"])
async def test_a_panel_answer_and_an_answer_cut_at_the_cap_are_marked(
    server: OpenAIServer, streamed: bool
) -> None:
    server.script("p/one", Reply("Check references, income and the advan", finish_reason="length"))
    server.script("p/two", "Check references and run a credit report.")
    server.script("synth/model", Reply("Check references, income and", finish_reason="length"))
    out = await fuse(server, stream_panel_tokens=streamed)
    result = result_of(out)
    assert [(r.model, r.truncated) for r in result.responses] == [
        ("p/one", True),
        ("p/two", False),
    ]
    assert result.answer_truncated is True
    data = out["result"]
    assert isinstance(data, dict)
    assert data["answer_truncated"] is True
    assert "truncated" not in data["responses"][1]  # additive: only where it happened
    shown = result_markdown(result, answer=str(out["answer"]))
    assert "cut at its token cap" in shown and "it is cut short" in shown


async def test_a_whole_answer_carries_no_mark(server: OpenAIServer) -> None:
    server.script("p/one", "Check references.")
    server.script("p/two", "Run a credit report.")
    server.script("synth/model", "Check references and credit.")
    out = await fuse(server)
    data = out["result"]
    assert isinstance(data, dict)
    assert "answer_truncated" not in data
    assert not any("truncated" in r for r in data["responses"])


async def test_reasoning_that_spends_the_whole_cap_fails_as_empty_and_names_the_cap(
    server: OpenAIServer,
) -> None:
    server.script("p/one", Reply("", finish_reason="length"))
    server.script("p/two", "Check references.")
    server.script("synth/model", "Check references.")
    result = result_of(await fuse(server, max_completion_tokens=256))
    [failed] = result.failed_models
    assert failed.model == "p/one" and failed.failure_reason == "empty_completion"
    assert "max_completion_tokens=256" in failed.error and "reasoning" in failed.error
