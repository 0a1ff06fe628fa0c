"""What a run does not redo or get wrong on its hot path: the judge's labels, readying its
models, and each structured-output method.

Over the real wire path (the loopback OpenAI-compatible server), through the
graph, the tool and the model alias.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest
from langchain_core.messages import HumanMessage
from langchain_openai import ChatOpenAI
from pydantic import SecretStr

from langfusion.graph import FusionContext, ModelRegistry, build_fusion_graph
from langfusion.graph.models import ModelTraits, StructuredMethod
from langfusion.graph.models.openrouter import CitingChatOpenAI
from langfusion.tools import FusionChatModel, FusionTool
from tests.fakes import result_of, verdict
from tests.openai_server import OpenAIServer

QUESTION = "Should a mid-size city build a tram or a bus rapid transit line?"
PANEL = ["p/1", "p/2", "p/3"]


@pytest.fixture
def server() -> Iterator[OpenAIServer]:
    with OpenAIServer() as running:
        for slug in PANEL:
            running.script(slug, f"{slug} answers: it depends on ridership.")
        running.script("judge/model", verdict())
        running.script("synth/model", "Build bus rapid transit first.")
        yield running


@pytest.fixture
def registry(server: OpenAIServer, monkeypatch: pytest.MonkeyPatch) -> ModelRegistry:
    monkeypatch.setenv("OPENROUTER_API_KEY", "sk-or-v1-HOTPATH0123456789abcdef")
    return ModelRegistry(base_url=server.base_url)


def context(panel: list[str]) -> FusionContext:
    return FusionContext(
        analysis_models=panel, model="judge/model", synthesis_model="synth/model", web_tools=False
    )


async def run(entry: str, registry: ModelRegistry, panel: list[str]) -> None:
    """One fusion through ``entry``; it must end with an analysis."""
    if entry == "graph":
        graph = build_fusion_graph(model_factory=registry, web_tools=[])
        out = await graph.ainvoke({"messages": [HumanMessage(QUESTION)]}, context=context(panel))
        assert result_of(out).analysis is not None, out["result"]
    elif entry == "tool":
        tool = FusionTool(
            analysis_models=panel, model="judge/model", model_factory=registry, web_tools=False
        )
        content = await tool.ainvoke(
            {"name": "fusion", "args": {"prompt": QUESTION}, "id": "c1", "type": "tool_call"}
        )
        assert '"analysis": {' in str(content.content), content.content
    else:
        alias = FusionChatModel(
            analysis_models=panel,
            model="judge/model",
            synthesis_model="synth/model",
            model_factory=registry,
            web_tools=False,
        )
        assert (await alias.ainvoke(QUESTION)).text


def judge_labels(server: OpenAIServer) -> list[list[str]]:
    """The labels each judge request's schema let it cite, request by request."""
    labels = []
    for request in server.requests_for("judge/model"):
        schema = request.body["response_format"]["json_schema"]["schema"]
        insight = schema["properties"]["unique_insights"]["items"]["properties"]["model"]
        labels.append(insight["enum"])
    return labels


@pytest.mark.parametrize("entry", ["graph", "tool", "alias"])
async def test_each_run_offers_the_judge_exactly_its_own_labels(
    entry: str, server: OpenAIServer, registry: ModelRegistry
) -> None:
    # Runs of three, three, two, three panelists: a reused judge binding must not
    # carry one run's labels into another.
    for panel in (PANEL, PANEL, PANEL[:2], PANEL):
        await run(entry, registry, panel)
    abc, ab = ["Response A", "Response B", "Response C"], ["Response A", "Response B"]
    assert judge_labels(server) == [abc, abc, ab, abc]


@pytest.mark.parametrize("entry", ["graph", "tool", "alias"])
async def test_remote_models_are_readied_on_the_event_loop_without_a_thread_hop(
    entry: str, registry: ModelRegistry, monkeypatch: pytest.MonkeyPatch
) -> None:
    threads: list[int] = []
    original = ModelRegistry.ensure_available

    def recording(self: ModelRegistry, slug: str) -> None:
        threads.append(threading.get_ident())
        original(self, slug)

    monkeypatch.setattr(ModelRegistry, "ensure_available", recording)
    await run(entry, registry, PANEL)
    assert threads, "the run did not ready its models"
    assert set(threads) == {threading.get_ident()}


async def test_a_missing_key_is_still_refused_before_any_call(
    server: OpenAIServer, registry: ModelRegistry, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("OPENROUTER_API_KEY")
    graph = build_fusion_graph(model_factory=registry, web_tools=[])
    out = await graph.ainvoke({"messages": [HumanMessage(QUESTION)]}, context=context(PANEL))
    assert result_of(out).failure_reason == "missing_api_key"
    assert "OPENROUTER_API_KEY" in (result_of(out).error or "")
    assert not any(server.requests_for(slug) for slug in [*PANEL, "judge/model", "synth/model"])


def test_only_the_embedded_model_may_block_while_it_is_readied(registry: ModelRegistry) -> None:
    assert registry.may_block("local/gemma-3-270m")
    assert not registry.may_block("p/1")
    registry.register("local/mine", ChatOpenAI(model="x", api_key="sk-unused"))  # type: ignore[arg-type]
    assert not registry.may_block("local/mine")


@pytest.mark.parametrize("method", ["json_schema", "function_calling", "json_mode"])
@pytest.mark.parametrize("entry", ["graph", "tool", "alias"])
async def test_every_structured_output_method_reaches_an_analysis(
    entry: str, method: StructuredMethod, server: OpenAIServer, registry: ModelRegistry
) -> None:
    judge = CitingChatOpenAI(
        model="judge/model",
        base_url=server.base_url,
        api_key=SecretStr("sk-unused"),
        metadata=ModelTraits(structured_method=method).as_metadata(),
    )
    registry.register("judge/model", judge)
    await run(entry, registry, PANEL)  # each entry asserts the run ended with an analysis
    judged = server.requests_for("judge/model")[-1]
    assert ("tool_choice" in judged.body) == (method == "function_calling")
    assert ("response_format" in judged.body) == (method != "function_calling")
