"""The pipeline's logic, with scripted models and no network."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest
from langchain_core.messages import AIMessage, HumanMessage, SystemMessage
from langgraph.checkpoint.memory import InMemorySaver
from pydantic import Field

from langfusion.graph import (
    ACTIVE_DEPTH,
    FusionContext,
    build_fusion_graph,
    result_markdown,
)
from tests.fakes import FakeFactory, ScriptedModel, api_error, result_of, verdict

QUESTION = "Where do economists disagree about a carbon tax?"


def make(
    panel: dict[str, ScriptedModel], judge_reply: Any = None, synth: str = "final"
) -> FakeFactory:
    models: dict[str, Any] = dict(panel)
    models["judge/model"] = ScriptedModel(
        replies=[verdict() if judge_reply is None else judge_reply]
    )
    models["synth/model"] = ScriptedModel(replies=[synth])
    return FakeFactory(models)


def ctx(panel: list[str], **kw: Any) -> FusionContext:
    return FusionContext(
        analysis_models=panel, model="judge/model", synthesis_model="synth/model", **kw
    )


async def run(
    factory: FakeFactory, context: FusionContext, messages: list[Any] | None = None
) -> dict[str, Any]:
    graph = build_fusion_graph(model_factory=factory, web_tools=[])
    return await graph.ainvoke({"messages": messages or [HumanMessage(QUESTION)]}, context=context)


async def test_full_run_returns_spec_result_and_answer() -> None:
    factory = make(
        {
            "a/one": ScriptedModel(replies=["answer one"]),
            "b/two": ScriptedModel(replies=["answer two"]),
        }
    )
    out = await run(factory, ctx(["a/one", "b/two"]))
    data = result_of(out).model_dump(mode="json")
    assert data["status"] == "ok"
    assert [r["model"] for r in data["responses"]] == ["a/one", "b/two"]
    assert [r["content"] for r in data["responses"]] == ["answer one", "answer two"]
    assert data["failed_models"] == []
    assert set(data["analysis"]) == {
        "consensus",
        "contradictions",
        "partial_coverage",
        "unique_insights",
        "blind_spots",
    }
    assert "failure_reason" not in data and "error" not in data
    assert out["answer"] == "final"
    # 2 panel calls + judge + synthesis, each 10 in / 5 out
    assert data["usage"]["total"] == {"input_tokens": 40, "output_tokens": 20, "total_tokens": 60}
    assert data["responses"][0]["usage"]["output_tokens"] == 5
    assert data["judge_usage"]["total_tokens"] == 15


async def test_analysis_names_real_slugs_while_the_judge_sees_only_labels() -> None:
    panel = {
        "a/one": ScriptedModel(replies=["alpha text"]),
        "b/two": ScriptedModel(replies=["beta text"]),
    }
    factory = make(panel)
    out = await run(factory, ctx(["a/one", "b/two"]))
    judge_prompt = "\n".join(str(m.content) for m in factory.models["judge/model"].calls[0])  # type: ignore[attr-defined]
    assert "a/one" not in judge_prompt and "b/two" not in judge_prompt
    assert 'label="Response A"' in judge_prompt and 'label="Response B"' in judge_prompt
    analysis = result_of(out).analysis
    named = {s.model for c in analysis.contradictions for s in c.stances}
    assert named == {"a/one", "b/two"}
    # The label the judge used maps to the slug whose text sat under it.
    a_first = judge_prompt.index("alpha text") < judge_prompt.index("beta text")
    expected_a = "a/one" if a_first else "b/two"
    assert analysis.partial_coverage[0].models == [expected_a]


async def test_judge_order_is_shuffled_across_runs() -> None:
    panel = {f"m/{i}": ScriptedModel(replies=[f"text-{i}"]) for i in range(6)}
    orders = set()
    for _ in range(6):
        factory = make(panel)
        await run(factory, ctx(list(panel)))
        prompt = str(factory.models["judge/model"].calls[-1][-1].content)  # type: ignore[attr-defined]
        orders.add(tuple(sorted(range(6), key=lambda i: prompt.index(f"text-{i}"))))
    assert len(orders) > 1


class TimedModel(ScriptedModel):
    """Records when each of its calls started and when it finished."""

    spans: list[list[float]] = Field(default_factory=list)

    async def _agenerate(
        self, messages: Any, stop: Any = None, run_manager: Any = None, **kw: Any
    ) -> Any:
        span = [time.monotonic()]
        self.spans.append(span)
        result = await super()._agenerate(messages, stop, run_manager, **kw)
        span.append(time.monotonic())
        return result


async def test_panel_runs_concurrently() -> None:
    panel = {f"m/{i}": TimedModel(replies=["ok"], delay=0.2) for i in range(4)}
    out = await run(make(panel), ctx(list(panel)))
    assert result_of(out).status == "ok"
    spans = [span for model in panel.values() for span in model.spans]
    # Every panel call started before any of them finished: they ran at once.
    assert len(spans) == 4 and max(s[0] for s in spans) < min(s[1] for s in spans)


async def test_failed_and_empty_panel_models_are_recorded_and_the_run_goes_on() -> None:
    panel = {
        "good/model": ScriptedModel(replies=["solid answer"]),
        "empty/model": ScriptedModel(replies=["   "]),
        "broken/model": ScriptedModel(replies=[ValueError("model exploded")]),
    }
    out = await run(make(panel), ctx(list(panel)))
    result = result_of(out)
    assert result.status == "ok"
    assert [r.model for r in result.responses] == ["good/model"]
    reasons = {f.model: f.failure_reason for f in result.failed_models}
    assert reasons == {"empty/model": "empty_completion", "broken/model": "upstream_error"}
    assert result.analysis is not None
    assert out["answer"] == "final"


async def test_all_panels_failed_is_an_error_result_not_an_exception() -> None:
    panel = {"x/1": ScriptedModel(replies=[ValueError("no")]), "x/2": ScriptedModel(replies=[""])}
    factory = make(panel)
    out = await run(factory, ctx(list(panel)))
    data = result_of(out).model_dump(mode="json")
    assert data["status"] == "error"
    assert data["failure_reason"] == "all_panels_failed"
    assert "x/1" in data["error"] and "x/2" in data["error"]
    assert {f["model"] for f in data["failed_models"]} == {"x/1", "x/2"}
    assert "analysis" not in data
    assert factory.models["judge/model"].calls == []  # type: ignore[attr-defined]
    assert out["answer"] == ""


@pytest.mark.parametrize(
    ("reply", "code"),
    [
        ("this is not json", "judge_not_valid_json"),
        ('{"consensus": "should be a list"}', "judge_schema_mismatch"),
        ("", "judge_empty_completion"),
        (api_error(401, "denied"), "judge_upstream_error"),
    ],
)
async def test_judge_failures_keep_status_ok_and_the_raw_responses(reply: Any, code: str) -> None:
    factory = make({"a/one": ScriptedModel(replies=["answer"])}, judge_reply=reply)
    out = await run(factory, ctx(["a/one"]))
    data = result_of(out).model_dump(mode="json")
    assert data["status"] == "ok"
    assert data["analysis"] is None
    assert data["failure_reason"] == code
    assert data["responses"][0]["content"] == "answer"
    # The synthesis still writes an answer, from the raw responses.
    assert out["answer"] == "final"
    synth_prompt = str(factory.models["synth/model"].calls[0][-1].content)  # type: ignore[attr-defined]
    assert "answer" in synth_prompt and "judge failed" in synth_prompt


async def test_judge_runs_at_temperature_zero_and_panel_gets_settings() -> None:
    factory = make({"a/one": ScriptedModel()})
    await run(factory, ctx(["a/one"], temperature=0.9, max_completion_tokens=321))
    settings = {(slug, s["role"]): s for slug, s in factory.settings}
    assert settings[("judge/model", "judge")]["temperature"] == 0.0
    assert settings[("a/one", "panel")]["temperature"] == 0.9
    assert settings[("a/one", "panel")]["max_tokens"] == 321
    assert all(s["headers"] == {"x-fusion-depth": "1"} for _, s in factory.settings)


async def test_earlier_turns_reach_the_panel_and_the_question_is_the_last_human_message() -> None:
    model = ScriptedModel()
    factory = make({"a/one": model})
    messages = [
        SystemMessage("caller system prompt"),
        HumanMessage("My country is Norway."),
        AIMessage("Noted."),
        HumanMessage(QUESTION),
    ]
    await run(factory, ctx(["a/one"]), messages)
    sent = model.calls[0]
    assert [type(m).__name__ for m in sent] == [
        "SystemMessage",
        "HumanMessage",
        "AIMessage",
        "HumanMessage",
    ]
    assert sent[1].content == "My country is Norway." and sent[-1].content == QUESTION
    judge_prompt = str(factory.models["judge/model"].calls[0][-1].content)  # type: ignore[attr-defined]
    assert f"<question>\n{QUESTION}\n</question>" in judge_prompt


@pytest.mark.parametrize("messages", [[], [AIMessage("hi")], [HumanMessage("   ")]])
async def test_no_question_is_an_invalid_request(messages: list[Any]) -> None:
    factory = make({"a/one": ScriptedModel()})
    out = await run(factory, ctx(["a/one"]), messages or [AIMessage("")])
    assert result_of(out).status == "error"
    assert result_of(out).failure_reason == "invalid_request"
    assert factory.models["a/one"].calls == []  # type: ignore[attr-defined]


async def test_a_slug_the_factory_cannot_build_is_refused_before_any_call() -> None:
    factory = make({"a/one": ScriptedModel()})
    out = await run(factory, ctx(["a/one", "nope/missing"]))
    assert result_of(out).failure_reason == "invalid_request"
    assert "nope/missing" in result_of(out).error
    assert factory.models["a/one"].calls == []  # type: ignore[attr-defined]


async def test_panel_timeout_becomes_a_failed_model() -> None:
    slow = TimedModel(delay=30)
    panel = {"fast/one": ScriptedModel(replies=["quick"]), "slow/one": slow}
    out = await run(make(panel), ctx(list(panel), timeout_s=0.5))
    assert [f.failure_reason for f in result_of(out).failed_models] == ["timeout"]
    assert result_of(out).status == "ok"
    assert [len(s) for s in slow.spans] == [1]  # the slow call was cut, never finished


async def test_skipping_synthesis_for_the_tool() -> None:
    factory = make({"a/one": ScriptedModel()})
    out = await run(factory, ctx(["a/one"], synthesize=False))
    assert result_of(out).status == "ok" and out["answer"] == ""
    assert factory.models["synth/model"].calls == []  # type: ignore[attr-defined]


async def test_nested_fusion_is_refused_with_recursion_blocked() -> None:
    """A panel model that itself runs a fusion gets recursion_blocked, without model calls."""
    inner_factory = make({"a/one": ScriptedModel()})
    inner_graph = build_fusion_graph(model_factory=inner_factory, web_tools=[])
    seen: list[Any] = []

    class NestingModel(ScriptedModel):
        async def _agenerate(
            self, messages: Any, stop: Any = None, run_manager: Any = None, **kw: Any
        ) -> Any:
            inner = await inner_graph.ainvoke(
                {"messages": [HumanMessage("nested?")]}, context=ctx(["a/one"])
            )
            seen.append(result_of(inner))
            return await super()._agenerate(messages, stop, run_manager, **kw)

    factory = make({"n/model": NestingModel()})
    out = await run(factory, ctx(["n/model"]))
    assert result_of(out).status == "ok"
    assert seen[0].status == "error" and seen[0].failure_reason == "recursion_blocked"
    assert inner_factory.models["a/one"].calls == []  # type: ignore[attr-defined]
    assert ACTIVE_DEPTH.get() is None


async def test_a_caller_at_depth_one_is_refused() -> None:
    factory = make({"a/one": ScriptedModel()})
    graph = build_fusion_graph(model_factory=factory, web_tools=[])
    out = await graph.ainvoke(
        {"messages": [HumanMessage(QUESTION)], "depth": 1}, context=ctx(["a/one"])
    )
    assert result_of(out).failure_reason == "recursion_blocked"
    assert factory.settings == []


async def test_checkpointed_run_resumes_without_calling_finished_panel_models_again() -> None:
    steady = ScriptedModel(replies=["steady answer"])
    slow = ScriptedModel(replies=["slow answer"], delay=1.0)
    factory = make({"s/steady": steady, "s/slow": slow})
    graph = build_fusion_graph(model_factory=factory, web_tools=[], checkpointer=InMemorySaver())
    config: Any = {"configurable": {"thread_id": "t1"}}
    context = ctx(["s/steady", "s/slow"])
    run_task = asyncio.create_task(
        graph.ainvoke({"messages": [HumanMessage(QUESTION)]}, config, context=context)
    )
    while not steady.calls:
        await asyncio.sleep(0.01)
    await asyncio.sleep(0.1)
    run_task.cancel()  # the process "dies" while the slow model is still answering
    with pytest.raises(asyncio.CancelledError):
        await run_task
    slow.delay = 0
    out = await graph.ainvoke(None, config, context=context)
    assert len(steady.calls) == 1
    assert len(slow.calls) == 1  # the cancelled call never finished; only the resumed one did
    assert result_of(out).status == "ok"
    assert [r.content for r in result_of(out).responses] == ["steady answer", "slow answer"]


async def test_context_validation_is_clear() -> None:
    with pytest.raises(ValueError, match="1 to 8"):
        FusionContext(analysis_models=[])
    with pytest.raises(ValueError, match="1 to 8"):
        FusionContext(analysis_models=[f"m/{i}" for i in range(9)])
    with pytest.raises(ValueError, match="more than once"):
        FusionContext(analysis_models=["a/b", "a/b"])
    with pytest.raises(ValueError, match="non-empty"):
        FusionContext(analysis_models=["a/b", ""])
    with pytest.raises(ValueError, match="max_tool_calls"):
        FusionContext(max_tool_calls=17)
    with pytest.raises(ValueError, match="max_tool_calls"):
        FusionContext(max_tool_calls=0)
    with pytest.raises(ValueError, match="timeout_s"):
        FusionContext(timeout_s=-1)
    with pytest.raises(ValueError, match="max_completion_tokens"):
        FusionContext(max_completion_tokens=-5)
    with pytest.raises(ValueError, match="preset"):
        FusionContext(preset="fastest")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="single string"):
        FusionContext(analysis_models="a/b")


def test_defaults_come_from_presets(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENROUTER_API_KEY", "sk-test-not-real")
    quality = FusionContext()
    assert quality.preset_used == "quality"
    assert quality.panel[0] == "~anthropic/claude-opus-latest"
    assert quality.judge == quality.synthesizer == "~anthropic/claude-opus-latest"
    assert FusionContext(preset="budget").judge == "~google/gemini-flash-latest"
    monkeypatch.delenv("OPENROUTER_API_KEY")
    assert FusionContext().preset_used == "local"
    assert FusionContext(analysis_models=["x/y"]).preset_used == "quality"


async def test_node_cache_reuses_identical_panel_answers_when_enabled() -> None:
    from langgraph.cache.memory import InMemoryCache

    model = ScriptedModel(replies=["cached answer"])
    factory = make({"a/one": model})
    graph = build_fusion_graph(model_factory=factory, web_tools=[], cache=InMemoryCache())
    for _ in range(2):
        out = await graph.ainvoke({"messages": [HumanMessage(QUESTION)]}, context=ctx(["a/one"]))
        assert result_of(out).responses[0].content == "cached answer"
    assert len(model.calls) == 1
    await graph.ainvoke(
        {"messages": [HumanMessage(QUESTION)]}, context=ctx(["a/one"], temperature=0.2)
    )
    assert len(model.calls) == 2  # other settings, other answer


async def test_depth_header_passed_as_configurable_is_refused() -> None:
    factory = make({"a/one": ScriptedModel()})
    graph = build_fusion_graph(model_factory=factory, web_tools=[])
    config: Any = {"configurable": {"x-fusion-depth": "1"}}
    out = await graph.ainvoke(
        {"messages": [HumanMessage(QUESTION)]}, config, context=ctx(["a/one"])
    )
    assert result_of(out).failure_reason == "recursion_blocked"
    assert factory.settings == []


async def test_result_renders_as_markdown_tables_with_real_slugs() -> None:
    factory = make(
        {"a/one": ScriptedModel(replies=["alpha"]), "b/two": ScriptedModel(replies=["beta"])}
    )
    out = await run(factory, ctx(["a/one", "b/two"]))
    table = result_markdown(result_of(out))
    assert "| consensus | all | Carbon taxes reduce emissions. |" in table
    assert "| contradiction | a/one | effect on growth:" in table
    assert "| blind spot | none | political feasibility |" in table
    assert "| b/two | 5 |" in table
