"""One declaration of the run parameters: every entry point takes and honours all of them."""

from __future__ import annotations

import json
from typing import Any

import pytest
from langchain_core.messages import HumanMessage, ToolMessage

from langfusion.graph import FusionContext
from langfusion.tools import FusionChatModel, FusionTool, with_fusion
from tests.fakes import FakeFactory, ScriptedModel, verdict

# A value for every parameter that differs from its default.
GIVEN: dict[str, Any] = {
    "analysis_models": ("p/one", "p/two"),
    "model": "judge/model",
    "synthesis_model": "synth/model",
    "max_tool_calls": 3,
    "max_completion_tokens": 77,
    "temperature": 0.4,
    "reasoning": "low",
    "preset": "budget",
    "timeout_s": 11.0,
    "judge_timeout_s": 12.0,
    "synthesis_timeout_s": 13.0,
    "synthesize": True,
    "web_tools": False,
    "judge_web_tools": True,
    "min_responses": 2,
    "max_retries": 5,
    "stream_panel_tokens": True,
    "quorum_grace_s": 2.5,
    "fallback_models": ("f/one",),
    "max_cost_usd": 2.5,
}


class ToolRecordingModel(ScriptedModel):
    """A scripted model that records the names of the tools bound to it."""

    bound: list[list[str]] = []

    def bind_tools(self, tools: Any, **kwargs: Any) -> ToolRecordingModel:  # type: ignore[override]
        self.bound.append([getattr(t, "name", str(t)) for t in tools])
        return self


def fake() -> FakeFactory:
    return FakeFactory(
        {
            "p/one": ToolRecordingModel(replies=["one"], bound=[]),
            "p/two": ToolRecordingModel(replies=["two"], bound=[]),
            "judge/model": ScriptedModel(replies=[verdict()]),
            "synth/model": ScriptedModel(replies=["answer"]),
        }
    )


def test_the_test_covers_every_parameter() -> None:
    assert set(GIVEN) == {f.name for f in FusionContext.parameters()}


@pytest.mark.parametrize("build", [FusionTool, FusionChatModel])
def test_every_parameter_reaches_the_context(build: Any) -> None:
    made = build(**GIVEN)
    assert made.context.settings() == GIVEN


def test_the_plugin_passes_every_parameter_to_its_tool() -> None:
    caller = ToolRecordingModel(replies=["hi"], bound=[])
    captured: list[Any] = []
    caller.__dict__["bind_tools"] = lambda tools, **kw: captured.extend(tools) or caller
    with_fusion(caller, **GIVEN)
    (tool,) = captured
    assert tool.context.settings() == GIVEN


@pytest.mark.parametrize(
    "build",
    [FusionTool, FusionChatModel, lambda **kw: with_fusion(ScriptedModel(), **kw)],
    ids=["tool", "alias", "plugin"],
)
def test_an_unknown_keyword_is_an_error_naming_it(build: Any) -> None:
    with pytest.raises(ValueError, match="'judge_temprature'"):
        build(judge_temprature=0.5)


def test_the_alias_refuses_to_run_without_its_synthesis() -> None:
    with pytest.raises(ValueError, match="synthesize=False"):
        FusionChatModel(synthesize=False)


async def test_the_tool_honours_web_tools_false() -> None:
    factory = fake()
    on = FusionTool(model_factory=factory, analysis_models=["p/one"], model="judge/model")
    await on.ainvoke({"prompt": "Is it?"})
    offered = factory.models["p/one"].bound  # type: ignore[attr-defined]
    assert offered and {"web_search", "web_fetch"} <= set(offered[0])

    factory = fake()
    off = FusionTool(
        model_factory=factory, analysis_models=["p/one"], model="judge/model", web_tools=False
    )
    await off.ainvoke({"prompt": "Is it?"})
    assert factory.models["p/one"].bound == []  # type: ignore[attr-defined]


async def test_the_alias_honours_the_judge_and_synthesis_timeouts() -> None:
    factory = fake()
    alias = FusionChatModel(
        model_factory=factory,
        analysis_models=["p/one"],
        model="judge/model",
        synthesis_model="synth/model",
        judge_timeout_s=5,
        synthesis_timeout_s=6,
        web_tools=False,
    )
    await alias.ainvoke([HumanMessage("Is it?")])
    timeouts = {(slug, s["role"]): s["timeout"] for slug, s in factory.settings}
    assert timeouts[("judge/model", "judge")] == 5
    assert timeouts[("synth/model", "synthesis")] == 6


async def test_the_tool_with_synthesize_returns_the_answer_too() -> None:
    factory = fake()
    tool = FusionTool(
        model_factory=factory,
        analysis_models=["p/one"],
        model="judge/model",
        synthesis_model="synth/model",
        synthesize=True,
        web_tools=False,
    )
    message = await tool.ainvoke(
        {"name": "fusion", "args": {"prompt": "Is it?"}, "id": "c1", "type": "tool_call"}
    )
    assert isinstance(message, ToolMessage)
    assert json.loads(str(message.content))["answer"] == "answer"
