"""Clients nobody here wrote, against the API: OpenRouter's Python SDK and the OpenAI SDK."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from tests.api_harness import PANEL, TOKEN, ApiServer, WatchingServer, calls_fusion
from tests.api_harness import running_api as running_api  # the fixture api
from tests.api_harness import scripted_upstream as scripted_upstream  # the fixture server

openrouter = pytest.importorskip("openrouter", reason="OpenRouter's SDK: pip install openrouter")
openai = pytest.importorskip("openai")

from openrouter import OpenRouter  # noqa: E402
from openrouter import components as c  # noqa: E402

QUESTION = "Where do economists disagree about a carbon tax?"
FUSION_EVENTS = {
    c.FusionCallInProgressEvent,
    c.FusionCallPanelAddedEvent,
    c.FusionCallPanelDeltaEvent,
    c.FusionCallPanelCompletedEvent,
    c.FusionCallAnalysisInProgressEvent,
    c.FusionCallAnalysisCompletedEvent,
    c.FusionCallCompletedEvent,
}


@pytest.fixture(autouse=True)
def _caller_calls_fusion(server: WatchingServer) -> None:
    server.script("caller/model", calls_fusion(), "The caller's answer, from the analysis.")


@pytest.fixture
def sdk(api: ApiServer) -> Iterator[Any]:
    with OpenRouter(api_key=TOKEN, server_url=api.base_url) as client:
        yield client


def known(value: Any) -> bool:
    """Whether the SDK parsed ``value`` into one of its typed classes, not an unknown fallback."""
    return not type(value).__name__.startswith("Unknown")


def tool() -> dict[str, Any]:
    return {"type": "openrouter:fusion", "parameters": {"model": "judge/model"}}


# OpenRouter's Python SDK.


def test_openrouter_sdk_chat_with_the_alias(sdk: Any, server: WatchingServer) -> None:
    result = sdk.chat.send(
        model="openrouter/fusion", messages=[{"role": "user", "content": QUESTION}]
    )
    assert isinstance(result, c.ChatResult)
    message = result.choices[0].message
    assert message.content == "The synthesis: recycle the revenue as dividends."
    assert result.model == "synth/model"
    (detail,) = message.reasoning_details
    assert isinstance(detail, c.ReasoningDetailServerToolCall)
    assert detail.tool_name == "openrouter:fusion"
    assert json.loads(detail.result)["status"] == "ok"
    assert result.usage.server_tool_use_details.tool_calls_executed == 1


def test_openrouter_sdk_chat_with_the_server_tool(sdk: Any, server: WatchingServer) -> None:
    result = sdk.chat.send(
        model="caller/model",
        messages=[{"role": "user", "content": QUESTION}],
        tools=[tool()],
    )
    message = result.choices[0].message
    assert message.content == "The caller's answer, from the analysis."
    assert not message.tool_calls
    (detail,) = message.reasoning_details
    assert isinstance(detail, c.ReasoningDetailServerToolCall)
    assert {r["model"] for r in json.loads(detail.result)["responses"]} == set(PANEL)


def test_openrouter_sdk_chat_streamed(sdk: Any) -> None:
    stream = sdk.chat.send(
        model="openrouter/fusion", messages=[{"role": "user", "content": QUESTION}], stream=True
    )
    chunks = list(stream)
    assert all(isinstance(chunk, c.ChatStreamChunk) for chunk in chunks)
    text = "".join(ch.choices[0].delta.content or "" for ch in chunks if ch.choices)
    assert text == "The synthesis: recycle the revenue as dividends."
    details = [
        d for ch in chunks if ch.choices for d in ch.choices[0].delta.reasoning_details or []
    ]
    assert [type(d) for d in details] == [c.ReasoningDetailServerToolCall]
    assert chunks[-1].usage is not None and chunks[-1].usage.total_tokens > 0


def test_openrouter_sdk_responses_whole(sdk: Any) -> None:
    result = sdk.responses.send(model="caller/model", input=QUESTION, tools=[tool()])
    assert isinstance(result, c.OpenResponsesResult)
    fusion, message = result.output
    assert isinstance(fusion, c.OutputFusionServerToolItem)
    assert fusion.status == "completed"
    assert isinstance(fusion.analysis, c.FusionAnalysisResult)
    assert {r.model for r in fusion.responses} == set(PANEL)
    assert isinstance(message, c.OutputMessageItem)
    assert message.content[0].text == "The caller's answer, from the analysis."
    assert all(known(t) for t in result.tools)


# `judge_model` is the SDK's deprecated name for `analyst_model`; both are sent.
@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_openrouter_sdk_responses_streamed_every_fusion_event_is_typed(sdk: Any) -> None:
    events = list(
        sdk.responses.send(model="caller/model", input=QUESTION, tools=[tool()], stream=True)
    )
    assert all(known(e) for e in events), [type(e).__name__ for e in events if not known(e)]
    kinds = {type(e) for e in events}
    assert FUSION_EVENTS <= kinds
    added = [e for e in events if isinstance(e, c.StreamEventsResponseOutputItemAdded)]
    assert isinstance(added[0].item, c.OutputFusionServerToolItem)
    (judging,) = [e for e in events if isinstance(e, c.FusionCallAnalysisInProgressEvent)]
    assert judging.analyst_model == judging.judge_model == "judge/model"
    (completed,) = [e for e in events if isinstance(e, c.StreamEventsResponseCompleted)]
    assert isinstance(completed.response.output[0], c.OutputFusionServerToolItem)
    assert all(known(item) for item in completed.response.output)
    text = "".join(e.delta for e in events if isinstance(e, c.TextDeltaEvent))
    assert text == "The caller's answer, from the analysis."


def test_openrouter_sdk_sees_a_401_as_its_unauthorized_error(api: ApiServer) -> None:
    with OpenRouter(api_key="lf-wrong", server_url=api.base_url) as client:
        with pytest.raises(openrouter.errors.UnauthorizedResponseError):
            client.chat.send(model="x/y", messages=[{"role": "user", "content": "hi"}])


# The OpenAI Python SDK.


@pytest.fixture
def oai(api: ApiServer) -> Iterator[Any]:
    client = openai.OpenAI(base_url=api.base_url, api_key=TOKEN, max_retries=0)
    yield client
    client.close()


def test_openai_sdk_plain(oai: Any, server: WatchingServer) -> None:
    server.script("plain/model", "Just an answer.")
    completion = oai.chat.completions.create(
        model="plain/model", messages=[{"role": "user", "content": "hi"}]
    )
    assert completion.choices[0].message.content == "Just an answer."
    assert completion.usage.total_tokens == 18


def test_openai_sdk_with_the_server_tool(oai: Any) -> None:
    completion = oai.chat.completions.create(
        model="caller/model",
        messages=[{"role": "user", "content": QUESTION}],
        tools=[tool()],
    )
    message = completion.choices[0].message
    assert message.content == "The caller's answer, from the analysis."
    assert message.tool_calls is None
    (detail,) = message.model_extra["reasoning_details"]
    assert json.loads(detail["result"])["status"] == "ok"
    assert completion.usage.model_extra["server_tool_use_details"]["tool_calls_executed"] == 1


def test_openai_sdk_streamed(oai: Any) -> None:
    chunks = list(
        oai.chat.completions.create(
            model="openrouter/fusion",
            messages=[{"role": "user", "content": QUESTION}],
            stream=True,
        )
    )
    text = "".join(ch.choices[0].delta.content or "" for ch in chunks if ch.choices)
    assert text == "The synthesis: recycle the revenue as dividends."
    assert chunks[-1].usage is not None and chunks[-1].usage.prompt_tokens > 0


def test_openai_sdk_sees_an_unknown_field_as_a_bad_request(oai: Any) -> None:
    with pytest.raises(openai.BadRequestError) as raised:
        oai.chat.completions.create(
            model="caller/model",
            messages=[{"role": "user", "content": "hi"}],
            extra_body={"fusion_mode": "always"},
        )
    assert "'fusion_mode'" in str(raised.value)
