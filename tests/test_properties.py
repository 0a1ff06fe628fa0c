"""Hostile input, generated: every entry point answers a clear ValueError or a typed result.

Bounded runs of ``hypothesis`` over the run parameters, the tool's arguments, the
graph's and the alias's ``messages``, and over whatever a model endpoint sends back.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from typing import Any, get_args

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from langchain_core.messages import AIMessage, HumanMessage, SystemMessage

from langfusion.graph import FusionContext, FusionResult, ModelRegistry, build_fusion_graph
from langfusion.graph.schema import PanelFailureReason, RunFailureReason
from langfusion.tools import FusionChatModel, FusionError, FusionTool
from tests.fakes import FakeFactory, ScriptedModel, result_of, verdict
from tests.openai_server import OpenAIServer, Reply

PANEL_REASONS = set(get_args(PanelFailureReason))
RUN_REASONS = set(get_args(RunFailureReason))
BOUNDED = settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**70), 2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=12),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)
hostile = (
    json_values
    | st.floats()  # nan and infinities among them
    | st.binary(max_size=6)
    | st.sets(st.text(max_size=6), max_size=3)
    | st.tuples(st.text(max_size=6), st.integers())
    | st.builds(object)
)


def plausible(name: str) -> st.SearchStrategy[Any]:
    """Values near what a parameter takes, so that valid runs are drawn too."""
    slugs = st.sampled_from(["a/one", "b/two", " a/one", "", "a/one\n", "local/x#1"])
    by_name: dict[str, st.SearchStrategy[Any]] = {
        "analysis_models": st.lists(slugs, max_size=10) | st.tuples(slugs, slugs),
        "model": slugs,
        "synthesis_model": slugs,
        "max_tool_calls": st.integers(-2, 20),
        "max_completion_tokens": st.integers(-2, 10**9),
        "min_responses": st.integers(-1, 10),
        "temperature": st.floats(-1, 3) | st.sampled_from(["hot", "0.5"]),
        "reasoning": st.sampled_from(["minimal", "low", "medium", "high", "max", "LOW"]),
        "preset": st.sampled_from(["quality", "budget", "local", "fastest", None]),
        "timeout_s": st.floats() | st.integers(-5, 1000) | st.sampled_from(["10"]),
        "judge_timeout_s": st.floats() | st.integers(-5, 1000),
        "synthesis_timeout_s": st.floats() | st.integers(-5, 1000),
        "synthesize": st.booleans() | st.sampled_from(["false", 0, 1]),
        "web_tools": st.booleans() | st.sampled_from(["false", "true", 0, 1, None]),
        "judge_web_tools": st.booleans() | st.sampled_from(["no", 1]),
    }
    return by_name.get(name, st.nothing()) | hostile


NAMES = [f.name for f in FusionContext.parameters()]
parameters = st.fixed_dictionaries({}, optional={name: plausible(name) for name in NAMES})


@BOUNDED
@given(values=parameters)
def test_fusion_context_takes_a_value_or_refuses_it_with_a_value_error(
    values: dict[str, Any],
) -> None:
    try:
        ctx = FusionContext(**values)
    except ValueError as exc:
        assert str(exc)  # says what to change
        return
    assert 1 <= len(ctx.panel) <= 8 and all(isinstance(s, str) and s.strip() for s in ctx.panel)
    for name in ("timeout_s", "judge_timeout_s", "synthesis_timeout_s"):
        value = getattr(ctx, name)
        assert not isinstance(value, bool) and math.isfinite(value) and value > 0
    for name in ("synthesize", "web_tools"):
        assert isinstance(getattr(ctx, name), bool)
    assert ctx.judge_web_tools is None or isinstance(ctx.judge_web_tools, bool)
    if ctx.temperature is not None:
        assert not isinstance(ctx.temperature, bool) and 0 <= ctx.temperature <= 2


@BOUNDED
@given(keys=st.dictionaries(st.text(max_size=12), hostile, max_size=3))
def test_unknown_parameters_are_named(keys: dict[str, Any]) -> None:
    unknown = set(keys) - set(NAMES)
    try:
        FusionContext.from_parameters(keys, owner="test")
    except ValueError as exc:
        assert all(repr(name) in str(exc) for name in unknown) or not unknown
    else:
        assert not unknown


def fakes() -> FakeFactory:
    return FakeFactory(
        {
            "p/one": ScriptedModel(replies=["an answer"]),
            "judge/model": ScriptedModel(replies=[verdict()]),
            "synth/model": ScriptedModel(replies=["the synthesis"]),
        }
    )


PARAMS = {"analysis_models": ["p/one"], "model": "judge/model", "web_tools": False}


def assert_typed(result: FusionResult) -> None:
    assert result.status in ("ok", "error")
    assert result.failure_reason is None or result.failure_reason in RUN_REASONS
    assert all(f.failure_reason in PANEL_REASONS for f in result.failed_models)
    if result.status == "error":
        assert result.error


@BOUNDED
@given(
    args=st.dictionaries(st.sampled_from(["prompt", "question", "x"]), hostile, max_size=2)
    | st.fixed_dictionaries({"prompt": st.text(max_size=30)})
)
async def test_the_tool_answers_any_arguments_with_a_typed_result(args: dict[str, Any]) -> None:
    tool = FusionTool(**PARAMS, model_factory=fakes())
    message = await tool.ainvoke({"name": "fusion", "args": args, "id": "c1", "type": "tool_call"})
    data = json.loads(str(message.content))
    assert_typed(FusionResult.model_validate(data))
    prompt = args.get("prompt")
    if set(args) == {"prompt"} and isinstance(prompt, str) and prompt.strip():
        assert data["status"] == "ok"
    elif not (isinstance(prompt, str | bytes) and prompt.strip()):
        assert data["status"] == "error" and data["failure_reason"] == "invalid_request"
    elif data["status"] == "error":  # a prompt beside other keys, or bytes pydantic may take
        assert data["failure_reason"] == "invalid_request"


messages = (
    st.lists(
        st.one_of(
            st.builds(HumanMessage, content=st.text(max_size=20)),
            st.builds(AIMessage, content=st.text(max_size=20)),
            st.builds(SystemMessage, content=st.text(max_size=20)),
            st.fixed_dictionaries(
                {
                    "role": st.sampled_from(["user", "assistant", "system", "wizard"]),
                    "content": hostile,
                }
            ),
            st.tuples(st.sampled_from(["human", "ai", "robot"]), st.text(max_size=10)),
            hostile,
        ),
        max_size=4,
    )
    | hostile
)


@BOUNDED
@given(conversation=messages)
async def test_the_graph_refuses_hostile_messages_with_a_value_error(conversation: Any) -> None:
    graph = build_fusion_graph(model_factory=fakes())
    try:
        out = await graph.ainvoke(
            {"messages": conversation},
            context=FusionContext(**PARAMS, synthesis_model="synth/model"),
        )
    except ValueError as exc:
        assert "messages" in str(exc)
        return
    assert_typed(result_of(out))
    assert isinstance(out["answer"], str)


OPTION_KEYS = [
    "tools",
    "tool_choice",
    "strict",
    "parallel_tool_calls",
    "response_format",
    "stop",
    "max_tokens",
    "temperature",
]
caller_inputs = st.fixed_dictionaries(
    {},
    optional={
        "reuse": hostile,
        "synthesis_options": st.dictionaries(st.sampled_from(OPTION_KEYS), hostile, max_size=3)
        | hostile,
        "depth": st.integers(-3, 3) | hostile,
    },
)


@BOUNDED
@given(inputs=caller_inputs)
async def test_the_graph_refuses_hostile_caller_inputs_before_building_a_model(
    inputs: dict[str, Any],
) -> None:
    # reuse, synthesis_options and depth arrive as JSON from a server's clients.
    factory = fakes()
    graph = build_fusion_graph(model_factory=factory)
    out = await graph.ainvoke(
        {"messages": [HumanMessage("Is it safe?")], **inputs},
        context=FusionContext(**PARAMS, synthesis_model="synth/model"),
    )
    assert_typed(result_of(out))
    if result_of(out).failure_reason == "invalid_request":
        assert factory.settings == []  # refused before any model was built, none was paid for
        assert any(key in result_of(out).error for key in inputs)


@pytest.mark.parametrize(
    ("inputs", "named"),
    [
        ({"reuse": {"status": "maybe"}}, "reuse"),
        ({"reuse": "the last one"}, "reuse"),
        ({"synthesis_options": "bind everything"}, "synthesis_options"),
        ({"synthesis_options": {"tools": 5}}, "tools"),
        ({"synthesis_options": {"max_tokens": 0}}, "max_tokens"),
        ({"synthesis_options": {"temperature": 2}}, "temperature"),
        ({"depth": "deep"}, "depth"),
        ({"depth": -1}, "depth"),
        ({"depth": True}, "depth"),
    ],
)
async def test_a_bad_caller_input_is_an_invalid_request_naming_it(
    inputs: dict[str, Any], named: str
) -> None:
    factory = fakes()
    graph = build_fusion_graph(model_factory=factory)
    out = await graph.ainvoke(
        {"messages": [HumanMessage("Is it safe?")], **inputs},
        context=FusionContext(**PARAMS, synthesis_model="synth/model"),
    )
    assert result_of(out).failure_reason == "invalid_request"
    assert named in result_of(out).error
    assert factory.settings == []


async def test_valid_synthesis_options_are_not_refused() -> None:
    # What they do to the synthesis call is on the wire in test_alias_agent.py.
    factory = fakes()
    graph = build_fusion_graph(model_factory=factory)
    options = {"stop": ["\n\n"], "max_tokens": 40, "tool_choice": True}
    out = await graph.ainvoke(
        {"messages": [HumanMessage("Is it safe?")], "synthesis_options": options},
        context=FusionContext(**PARAMS, synthesis_model="synth/model"),
    )
    assert result_of(out).status == "ok"
    assert out["answer"] == "the synthesis"


@BOUNDED
@given(conversation=messages)
async def test_the_alias_answers_or_raises_a_clear_error_for_any_messages(
    conversation: Any,
) -> None:
    alias = FusionChatModel(**PARAMS, synthesis_model="synth/model", model_factory=fakes())
    try:
        reply = await alias.ainvoke(conversation)
    except FusionError as exc:
        assert_typed(exc.result)
        return
    # NotImplementedError: LangChain's own refusal of input it cannot read as messages
    # (bytes, numbers, an empty tuple), the same from every chat model.
    except (ValueError, NotImplementedError) as exc:
        assert str(exc)
        return
    assert reply.content == "the synthesis"


@pytest.fixture(scope="module")
def endpoint() -> Iterator[OpenAIServer]:
    with OpenAIServer() as running:
        running.script("judge/model", verdict())
        running.script("synth/model", "the synthesis")
        yield running


def near_completion() -> st.SearchStrategy[Any]:
    """Bodies shaped like a chat completion, with any field wrong, missing or extra."""
    message = st.fixed_dictionaries(
        {},
        optional={
            "role": json_values,
            "content": json_values,
            "tool_calls": json_values,
            "refusal": json_values,
            "extra": json_values,
        },
    )
    choice = st.fixed_dictionaries(
        {}, optional={"message": message | json_values, "finish_reason": json_values}
    )
    return st.fixed_dictionaries(
        {},
        optional={
            "id": json_values,
            "object": json_values,
            "choices": st.lists(choice | json_values, max_size=2) | json_values,
            "usage": json_values,
            "error": json_values,
        },
    )


@pytest.mark.slow  # 40 fusions over HTTP, each waiting out a retry back-off
@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(body=near_completion() | json_values)
async def test_whatever_an_endpoint_sends_back_becomes_a_typed_result(
    endpoint: OpenAIServer, monkeypatch: pytest.MonkeyPatch, body: Any
) -> None:
    monkeypatch.setenv("OPENROUTER_API_KEY", "sk-or-v1-PROPERTY0123456789")
    endpoint.script("p/one", Reply(fault="raw", body=body))
    graph = build_fusion_graph(model_factory=ModelRegistry(base_url=endpoint.base_url))
    # A short deadline: an unreadable 200 is retried like a 5xx, and the
    # deadline ends the back-off with the upstream error as the reason.
    out = await graph.ainvoke(
        {"messages": [HumanMessage("Is this a completion?")]},
        context=FusionContext(**PARAMS, synthesis_model="synth/model", timeout_s=0.3),
    )
    result = result_of(out)
    assert_typed(result)
    if result.responses:
        assert isinstance(result.responses[0].content, str) and result.responses[0].content
    else:
        (failed,) = result.failed_models
        assert failed.failure_reason in ("upstream_error", "empty_completion", "refused")
