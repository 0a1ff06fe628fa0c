"""Cost: prices from a loopback ``/models``, the worst case before a run, the budget, the totals."""

from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import Iterator
from typing import Any

import pytest
from langchain_core.messages import HumanMessage
from langchain_core.tools import tool
from langchain_core.tracers import LangChainTracer
from langsmith import Client

from langfusion.graph import (
    CostProjection,
    FusionContext,
    FusionResult,
    ModelRegistry,
    Pricing,
    aestimate_cost,
    build_fusion_graph,
    estimate_cost,
    result_markdown,
)
from langfusion.graph.models.pricing import PriceList
from tests.fakes import FakeFactory, ScriptedModel, result_of, verdict
from tests.langsmith_capture import CaptureServer
from tests.openai_server import OpenAIServer, Reply

SECRET = "sk-or-v1-COSTSECRET0123456789abcdef"
QUESTION = "Is a carbon tax better than cap and trade?"
PANEL = ["p/one", "p/two"]
CAP = 400  # max_completion_tokens of the runs below
PRICES = {
    "p/one": (2e-6, 8e-6),
    "p/two": (1e-6, 4e-6),
    "judge/model": (3e-6, 1.5e-5),
    "synth/model": (5e-7, 2e-6),
}
SYNTH_LIMIT = 300  # the synthesis model's own completion limit, as /models lists it


def listed(slug: str, prompt: float, completion: float, limit: int | None = None) -> dict[str, Any]:
    """A model as OpenRouter's ``/models`` lists it: prices per token as decimal strings."""
    return {
        "id": slug,
        "pricing": {"prompt": f"{prompt:.10f}", "completion": f"{completion:.10f}"},
        "context_length": 128000,
        "top_provider": {"max_completion_tokens": limit},
    }


@pytest.fixture(autouse=True)
def _estimated_tokens(monkeypatch: pytest.MonkeyPatch) -> None:
    # tiktoken downloads its encoding on first use: tests count without it.
    monkeypatch.setenv("LANGFUSION_TOKEN_COUNTING", "estimate")


@pytest.fixture
def server(monkeypatch: pytest.MonkeyPatch) -> Iterator[OpenAIServer]:
    monkeypatch.setenv("OPENROUTER_API_KEY", SECRET)
    with OpenAIServer() as running:
        # Every call writes its whole cap: the run costs as much as a run can.
        running.script("p/one", Reply("one says yes", completion_tokens=CAP))
        running.script("p/two", Reply("two says no", completion_tokens=CAP))
        running.script("judge/model", Reply(verdict(), completion_tokens=CAP))
        running.script("synth/model", Reply("the synthesis", completion_tokens=SYNTH_LIMIT))
        running.models = [
            listed(slug, *price, SYNTH_LIMIT if slug == "synth/model" else None)
            for slug, price in PRICES.items()
        ]
        yield running


def context(**kw: Any) -> FusionContext:
    settings: dict[str, Any] = {
        "analysis_models": PANEL,
        "model": "judge/model",
        "synthesis_model": "synth/model",
        "max_completion_tokens": CAP,
        "web_tools": False,
    }
    return FusionContext(**(settings | kw))


async def fuse(registry: ModelRegistry, ctx: FusionContext, **graph: Any) -> FusionResult:
    fusion = build_fusion_graph(model_factory=registry, **graph)
    return result_of(await fusion.ainvoke({"messages": [HumanMessage(QUESTION)]}, context=ctx))


@tool
def web_search(query: str) -> str:
    """Search the web."""
    return f"results for {query}"


@pytest.mark.parametrize(
    "settings",
    [{}, {"judge_web_tools": True}, {"web_tools": True, "max_tool_calls": 3}],
    ids=["plain", "judge researches", "panel uses tools"],
)
async def test_the_projection_is_never_below_the_actual_cost_of_the_same_run(
    server: OpenAIServer, settings: dict[str, Any]
) -> None:
    registry = ModelRegistry(base_url=server.base_url)
    ctx = context(**settings)
    if ctx.web_tools:  # p/one searches until its tool budget is spent, then answers
        search = Reply(tool_call=("web_search", {"query": "carbon"}), completion_tokens=CAP)
        server.script("p/one", search, search, search, Reply("one", completion_tokens=CAP))
    projection = await aestimate_cost(QUESTION, ctx, model_factory=registry)
    result = await fuse(registry, ctx, web_tools=[web_search])

    assert result.status == "ok" and projection.complete
    if ctx.web_tools:
        assert len(server.requests_for("p/one")) == ctx.max_tool_calls + 1
    usage = result.usage
    assert usage.total.cost_source == "price_table"
    assert usage.total.cost is not None and 0 < usage.total.cost <= projection.total_usd
    for step in ("panel", "judge", "synthesis"):
        assert getattr(usage, step).cost <= projection.steps[step], step
    # The totals add up: every call, each step, the run.
    costs = [r.usage.cost for r in result.responses if r.usage]
    assert usage.panel.cost == pytest.approx(sum(costs))
    assert result.judge_usage and result.judge_usage.cost == pytest.approx(usage.judge.cost)
    parts = [usage.panel.cost, usage.judge.cost, usage.synthesis.cost]
    assert usage.total.cost == pytest.approx(sum(parts))


async def test_a_call_is_priced_from_its_tokens_at_the_listed_price(
    server: OpenAIServer,
) -> None:
    result = await fuse(ModelRegistry(base_url=server.base_url), context())
    (one,) = [r for r in result.responses if r.model == "p/one"]
    prompt, completion = PRICES["p/one"]
    assert one.usage is not None and one.usage.cost_source == "price_table"
    assert one.usage.cost == pytest.approx(11 * prompt + CAP * completion)
    data = json.loads(result.to_json())
    assert data["usage"]["total"]["cost_source"] == "price_table"
    assert "at list prices" in result_markdown(result)


async def test_a_refused_run_makes_no_chat_call(server: OpenAIServer) -> None:
    registry = ModelRegistry(base_url=server.base_url)
    projection = await aestimate_cost(QUESTION, context(), model_factory=registry)
    budget = projection.total_usd / 2
    result = await fuse(registry, context(max_cost_usd=budget))

    assert (result.status, result.failure_reason) == ("error", "budget_exceeded")
    assert server.requests == []
    assert result.cost_projection is not None and result.cost_projection.total_usd > budget
    assert f"max_cost_usd={budget:g}" in (result.error or "")
    assert json.loads(result.to_json())["cost_projection"]["total_usd"] == projection.total_usd
    # A budget the worst case fits runs.
    allowed = await fuse(registry, context(max_cost_usd=projection.total_usd))
    assert allowed.status == "ok" and "cost_projection" not in json.loads(allowed.to_json())


async def test_an_unpriced_slug_refuses_the_run_under_a_budget_and_goes_unpriced_without(
    server: OpenAIServer,
) -> None:
    server.models = [m for m in server.models if m["id"] != "p/two"]
    registry = ModelRegistry(base_url=server.base_url)
    refused = await fuse(registry, context(max_cost_usd=100.0))
    assert refused.failure_reason == "budget_exceeded" and "p/two" in (refused.error or "")
    assert refused.cost_projection is not None and refused.cost_projection.unpriced == ["p/two"]
    assert not refused.cost_projection.complete
    assert server.requests == []

    result = await fuse(registry, context())
    costs = {r.model: r.usage.cost if r.usage else None for r in result.responses}
    assert costs["p/two"] is None and costs["p/one"] is not None
    assert result.usage.total.cost == pytest.approx(
        sum(c for c in [*costs.values(), result.usage.judge.cost, result.usage.synthesis.cost] if c)
    )


async def test_models_is_fetched_once_for_many_runs(server: OpenAIServer) -> None:
    registry = ModelRegistry(base_url=server.base_url)
    budgeted = context(max_cost_usd=100.0)
    results = await asyncio.gather(*(fuse(registry, budgeted) for _ in range(6)))
    results += [await fuse(registry, context()) for _ in range(2)]
    await aestimate_cost(QUESTION, budgeted, model_factory=registry)
    assert all(r.status == "ok" and r.usage.total.cost for r in results)
    assert server.models_reads == 1


async def test_a_cost_the_provider_reports_wins_and_needs_no_price_list(
    server: OpenAIServer,
) -> None:
    for slug in (*PANEL, "judge/model", "synth/model"):
        server.script(slug, Reply(verdict() if slug == "judge/model" else "ok", cost=0.25))
    result = await fuse(ModelRegistry(base_url=server.base_url), context())
    assert result.usage.total.cost == pytest.approx(1.0)
    assert result.usage.total.cost_source == "provider"
    assert server.models_reads == 0  # nothing was missing a cost


async def test_a_price_given_by_the_user_prices_a_registered_endpoint(
    server: OpenAIServer,
) -> None:
    registry = ModelRegistry(base_url=server.base_url)
    registry.register(
        "mine/model",
        server.base_url,
        model_name="p/one",
        pricing=Pricing(1e-3, 2e-3, max_completion_tokens=CAP),
    )
    ctx = context(analysis_models=["mine/model"], max_completion_tokens=None)
    projection = await aestimate_cost(QUESTION, ctx, model_factory=registry)
    (call,) = [c for c in projection.calls if c.model == "mine/model"]
    assert (call.completion_tokens, call.cap_source) == (CAP, "model_limit")
    result = await fuse(registry, ctx)
    (answer,) = result.responses
    assert answer.usage is not None and answer.usage.cost == pytest.approx(11e-3 + CAP * 2e-3)


def test_a_slug_nobody_prices_is_unpriced_and_a_price_list_that_cannot_be_had_is_no_crash() -> None:
    factory = FakeFactory({"p/one": ScriptedModel(), "judge/model": ScriptedModel()})
    projection = estimate_cost(
        QUESTION,
        FusionContext(analysis_models=["p/one"], model="judge/model"),
        model_factory=factory,
    )
    assert projection.unpriced == ["p/one", "judge/model"] and projection.total_usd == 0
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    missing = asyncio.run(PriceList().price_of(f"http://127.0.0.1:{port}/v1", "p/one"))
    assert missing is None


async def test_the_worst_case_grows_with_the_question_rounds_and_caps(server: OpenAIServer) -> None:
    registry = ModelRegistry(base_url=server.base_url)

    async def worst(question: str = QUESTION, **kw: Any) -> CostProjection:
        return await aestimate_cost(question, context(**kw), model_factory=registry)

    base = await worst()
    assert base.token_counting == "estimate"
    longer = await worst(QUESTION + " Consider this." * 2000)
    assert longer.total_usd > base.total_usd
    (panel,) = [
        c for c in (await worst(web_tools=True, max_tool_calls=5)).calls if c.model == "p/one"
    ]
    assert panel.rounds == 6
    assert (await worst(max_completion_tokens=CAP * 2)).total_usd > base.total_usd
    # The judge reads every panel answer at its cap; it may research first, unless told not to.
    judges = [c for c in base.calls if c.step == "judge"]
    assert judges and all(judge.prompt_tokens > len(PANEL) * CAP for judge in judges)
    (alone,) = [c for c in (await worst(judge_web_tools=False)).calls if c.step == "judge"]
    assert alone.rounds == 1 and alone.prompt_tokens > len(PANEL) * CAP
    assert set(base.steps) == {"panel", "judge", "synthesis"}
    assert sum(base.models.values()) == pytest.approx(base.total_usd)


def test_a_price_must_be_a_finite_amount_of_zero_or_more() -> None:
    for bad in (-1e-6, float("nan"), "0.1"):
        with pytest.raises(ValueError, match="prompt_per_token"):
            Pricing(bad, 0.0)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="pricing must be a Pricing"):
        ModelRegistry().register("x/y", "http://127.0.0.1:1/v1", pricing=(1, 2))  # type: ignore[arg-type]


async def test_the_run_cost_reaches_its_langsmith_trace(server: OpenAIServer) -> None:
    with CaptureServer() as capture:
        client = Client(api_url=capture.url, api_key="lsv2_pt_x", auto_batch_tracing=False)
        fusion = build_fusion_graph(model_factory=ModelRegistry(base_url=server.base_url))
        tracer = LangChainTracer(client=client, project_name="cost")
        out = await fusion.ainvoke(
            {"messages": [HumanMessage(QUESTION)]},
            {"callbacks": [tracer]},
            context=context(max_cost_usd=100.0),
        )
        client.flush()
        runs = capture.runs()
    result = result_of(out)
    metadata_of = [(r.get("extra") or {}).get("metadata") or {} for r in runs.values()]
    (metadata,) = [m for m in metadata_of if "fusion_cost_usd" in m]
    (projected,) = [m for m in metadata_of if "fusion_projected_cost_usd" in m]
    assert projected["fusion_budget_usd"] == 100.0
    assert projected["fusion_projected_cost_usd"] >= metadata["fusion_cost_usd"]
    assert metadata["fusion_cost_usd"] == pytest.approx(result.usage.total.cost)
    assert metadata["fusion_cost_source"] == "price_table"
    assert set(metadata["fusion_cost_by_panelist"]) == set(PANEL)
