"""Every failure tells the truth: the typed reason, the real cause, no secret, over real HTTP."""

from __future__ import annotations

import json
import traceback
from collections.abc import Iterator
from typing import Any, get_args

import pytest
from langchain_core.callbacks import AsyncCallbackHandler
from langchain_core.messages import HumanMessage

from langfusion.graph import FusionContext, ModelRegistry, build_fusion_graph
from langfusion.graph.schema import FailureReason, PanelFailureReason, RunFailureReason
from tests.fakes import result_of, verdict
from tests.openai_server import OpenAIServer, Reply

SECRET = "sk-or-v1-FAULTSECRET0123456789abcdef"
QUESTION = "Is nuclear power safer per TWh than wind?"
ANSWER = "Both are far safer than coal, and close to each other."


@pytest.fixture
def server() -> Iterator[OpenAIServer]:
    with OpenAIServer() as running:
        running.script("judge/model", verdict())
        running.script("synth/model", ANSWER)
        yield running


@pytest.fixture
def registry(server: OpenAIServer, monkeypatch: pytest.MonkeyPatch) -> ModelRegistry:
    monkeypatch.setenv("OPENROUTER_API_KEY", SECRET)
    return ModelRegistry(base_url=server.base_url)


def context(panel: list[str], **kw: Any) -> FusionContext:
    kw.setdefault("web_tools", False)
    return FusionContext(
        analysis_models=panel, model="judge/model", synthesis_model="synth/model", **kw
    )


async def fuse(
    registry: ModelRegistry, panel: list[str], config: Any = None, **kw: Any
) -> dict[str, Any]:
    graph = build_fusion_graph(model_factory=registry)
    return await graph.ainvoke(
        {"messages": [HumanMessage(QUESTION)]}, config, context=context(panel, **kw)
    )


class ErrorLog(AsyncCallbackHandler):
    """Every error handed to callbacks (what a tracer such as LangSmith records)."""

    def __init__(self) -> None:
        self.errors: list[BaseException] = []

    async def on_llm_error(self, error: BaseException, **kwargs: Any) -> None:
        self.errors.append(error)

    async def on_chain_error(self, error: BaseException, **kwargs: Any) -> None:
        self.errors.append(error)

    async def on_tool_error(self, error: BaseException, **kwargs: Any) -> None:
        self.errors.append(error)

    def text(self) -> str:
        return "\n".join(
            f"{error!r}\n{''.join(traceback.format_exception(error))}" for error in self.errors
        )


def test_the_failure_reasons_are_the_specs_closed_set() -> None:
    assert set(get_args(PanelFailureReason)) == {
        "timeout",
        "rate_limited",
        "insufficient_credits",
        "unauthorized",
        "forbidden",
        "model_not_found",
        "invalid_request",
        "context_length_exceeded",
        "upstream_error",
        "connection_error",
        "empty_completion",
        "refused",
        "cut_after_quorum",
    }
    assert set(get_args(RunFailureReason)) == {
        "all_panels_failed",
        "rate_limited",
        "insufficient_credits",
        "insufficient_responses",
        "missing_api_key",
        "invalid_request",
        "recursion_blocked",
        "local_model_unavailable",
        "judge_not_valid_json",
        "judge_schema_mismatch",
        "judge_upstream_error",
        "judge_empty_completion",
        "synthesis_failed",
        "budget_exceeded",
        # OpenRouter's, for the HTTP API.
        "fusion_invocation_capped",
        "cancelled",
        "unexpected_error",
    }
    assert set(get_args(FailureReason)) == set(get_args(PanelFailureReason)) | set(
        get_args(RunFailureReason)
    )


FAULTS = [
    (Reply("slow down", status=429, headers={"Retry-After": "300"}), "rate_limited", 429, 1),
    (Reply("overloaded", status=500), "upstream_error", 500, 3),
    (Reply("bad gateway", status=502), "upstream_error", 502, 3),
    (Reply("unavailable", status=503), "upstream_error", 503, 3),
    (Reply("who are you", status=401), "unauthorized", 401, 1),
    (Reply("top up", status=402), "insufficient_credits", 402, 1),
    (Reply("not for you", status=403), "forbidden", 403, 1),
    (Reply("no such model", status=404), "model_not_found", 404, 1),
    (Reply("unknown parameter foo", status=400), "invalid_request", 400, 1),
    (
        Reply("This model's maximum context length is 8192 tokens", status=400),
        "context_length_exceeded",
        400,
        1,
    ),
    (Reply(fault="malformed"), "upstream_error", 200, 3),
    (Reply("the provider failed", fault="error_body"), "upstream_error", 200, 3),
    (
        Reply(fault="raw", body={"object": "chat.completion", "choices": []}),
        "upstream_error",
        200,
        3,
    ),
    (Reply(fault="reset"), "connection_error", None, 3),
    (Reply(fault="truncated"), "connection_error", None, 3),
    (Reply(""), "empty_completion", None, 1),
]


@pytest.mark.parametrize(("reply", "reason", "status", "attempts"), FAULTS)
async def test_each_fault_fails_the_panel_model_with_its_own_reason(
    server: OpenAIServer,
    registry: ModelRegistry,
    reply: Reply,
    reason: str,
    status: int | None,
    attempts: int,
) -> None:
    server.script("ok/model", "a fine answer")
    server.script("bad/model", reply)
    out = await fuse(registry, ["ok/model", "bad/model"])
    result = result_of(out)
    assert result.status == "ok" and [r.model for r in result.responses] == ["ok/model"]
    (failed,) = result.failed_models
    assert (failed.model, failed.failure_reason, failed.status_code) == (
        "bad/model",
        reason,
        status,
    )
    dumped = failed.model_dump(mode="json")
    assert ("status_code" in dumped) is (status is not None)
    # Transient faults are retried by the client; the others are not.
    assert len(server.requests_for("bad/model")) == attempts
    assert out["answer"] == ANSWER


async def test_a_rate_limit_outlasting_the_deadline_is_rate_limited_not_timeout(
    server: OpenAIServer, registry: ModelRegistry
) -> None:
    # No Retry-After: the client backs off 0.4-0.5 s, then 0.75-1 s; the 0.7 s
    # deadline ends the second wait, with no attempt in flight.
    for name in ("p/1", "p/2"):
        server.script(name, Reply("slow down", status=429))
    out = await fuse(registry, ["p/1", "p/2"], timeout_s=0.7)
    data = result_of(out).model_dump(mode="json")
    assert data["status"] == "error" and data["failure_reason"] == "rate_limited"
    for failed in data["failed_models"]:
        assert failed["failure_reason"] == "rate_limited" and failed["status_code"] == 429
        assert "deadline" in failed["error"]
    for name in ("p/1", "p/2"):
        attempts = server.requests_for(name)
        assert len(attempts) == 2  # the third attempt never started
        assert all(a.finished for a in attempts)  # and none was cut in flight


async def test_an_upstream_error_outlasting_the_deadline_keeps_its_status(
    server: OpenAIServer, registry: ModelRegistry
) -> None:
    server.script("ok/model", "fine")
    server.script("down/model", Reply("unavailable", status=503))
    out = await fuse(registry, ["ok/model", "down/model"], timeout_s=0.7)
    (failed,) = result_of(out).failed_models
    assert (failed.failure_reason, failed.status_code) == ("upstream_error", 503)


async def test_an_attempt_cut_in_flight_after_a_rate_limit_is_a_timeout(
    server: OpenAIServer, registry: ModelRegistry
) -> None:
    server.script("ok/model", "fine")
    server.script(
        "flaky/model",
        Reply("slow down", status=429, headers={"Retry-After": "0.1"}),
        Reply(hang=True),
    )
    out = await fuse(registry, ["ok/model", "flaky/model"], timeout_s=0.8)
    (failed,) = result_of(out).failed_models
    assert failed.failure_reason == "timeout" and failed.status_code is None
    first, second = server.requests_for("flaky/model")
    assert first.finished and not second.finished  # the second attempt was in flight


async def test_a_retry_after_beyond_the_deadline_fails_at_once_without_retrying(
    server: OpenAIServer, registry: ModelRegistry
) -> None:
    server.script("ok/model", "fine")
    server.script("busy/model", Reply("slow down", status=429, headers={"Retry-After": "120"}))
    out = await fuse(registry, ["ok/model", "busy/model"], timeout_s=30)
    (failed,) = result_of(out).failed_models
    assert (failed.failure_reason, failed.status_code) == ("rate_limited", 429)
    (only,) = server.requests_for("busy/model")
    # The run went on to the judge as soon as the one attempt was answered.
    judge = server.requests_for("judge/model")[0]
    assert only.finished <= judge.started


@pytest.mark.parametrize(
    "reply",
    [
        Reply(f"Incorrect API key provided: {SECRET}", status=401),
        Reply(f"Authorization: Bearer {SECRET} is not valid", fault="error_body"),
        Reply(f"upstream says api_key={SECRET}", status=500),
    ],
    ids=["401-body", "200-error-body", "500-body"],
)
async def test_no_echoed_key_reaches_results_or_callbacks(
    server: OpenAIServer, registry: ModelRegistry, reply: Reply
) -> None:
    server.script("ok/model", "fine")
    server.script("echo/model", reply)
    errors = ErrorLog()
    out = await fuse(registry, ["ok/model", "echo/model"], {"callbacks": [errors]})
    assert server.requests_for("echo/model")[0].headers["authorization"] == f"Bearer {SECRET}"
    assert result_of(out).failed_models[0].model == "echo/model"
    assert errors.errors, "the failed call was not reported to the callbacks"
    seen = result_of(out).to_json() + out["answer"] + errors.text()
    assert SECRET not in seen and SECRET[:16] not in seen


async def test_an_empty_synthesis_is_synthesis_failed_and_keeps_what_was_paid_for(
    server: OpenAIServer, registry: ModelRegistry
) -> None:
    server.script("p/1", "panel answer")
    server.script("synth/model", "")
    out = await fuse(registry, ["p/1"])
    result = result_of(out)
    assert result.status == "ok" and result.failure_reason == "synthesis_failed"
    assert result.analysis is not None and result.responses[0].content == "panel answer"
    assert "empty" in (result.error or "")
    assert out["answer"] == ""


async def test_a_failed_synthesis_says_so_even_when_the_judge_failed_too(
    server: OpenAIServer, registry: ModelRegistry
) -> None:
    server.script("p/1", "panel answer")
    server.script("judge/model", Reply("judge down", status=400))
    server.script("synth/model", Reply("synthesis down", status=400))
    out = await fuse(registry, ["p/1"])
    result = result_of(out)
    assert result.failure_reason == "synthesis_failed" and result.analysis is None
    assert "judge_upstream_error" in (result.error or "")
    assert result.responses[0].content == "panel answer"
    assert out["answer"] == ""


async def stream_run(
    registry: ModelRegistry, panel: list[str], config: dict[str, Any] | None = None
) -> tuple[list[tuple[str, str]], dict[str, Any]]:
    """The synthesis tokens of the "messages" stream as (message id, text), and the output."""
    graph = build_fusion_graph(model_factory=registry)
    tokens: list[tuple[str, str]] = []
    final: dict[str, Any] = {}
    async for mode, payload in graph.astream(
        {"messages": [HumanMessage(QUESTION)]},
        config,
        context=context(panel),
        stream_mode=["messages", "values"],
    ):
        if mode == "messages":
            chunk, meta = payload
            if meta["langgraph_node"] == "synthesize" and chunk.text:
                tokens.append((str(chunk.id), chunk.text))
        else:
            final = payload
    return tokens, final


@pytest.mark.parametrize("fault", ["sse_cut", "sse_error"])
async def test_a_synthesis_stream_cut_midway_is_retried_under_a_new_message_id(
    server: OpenAIServer, registry: ModelRegistry, fault: str
) -> None:
    server.script("p/1", "panel answer")
    server.script("synth/model", Reply(f"Half an answer, then {SECRET}", fault=fault), ANSWER)
    errors = ErrorLog()
    tokens, final = await stream_run(registry, ["p/1"], {"callbacks": [errors]})
    ids = list(dict.fromkeys(message_id for message_id, _ in tokens))
    assert len(ids) == 2, tokens  # the cut attempt, then the retry, each under its own id
    first = "".join(text for message_id, text in tokens if message_id == ids[0])
    second = "".join(text for message_id, text in tokens if message_id == ids[1])
    assert first == "Half an" and second == ANSWER
    assert final["answer"] == ANSWER and result_of(final).failure_reason is None
    assert len(server.requests_for("synth/model")) == 2
    assert SECRET not in errors.text()


async def test_a_synthesis_stream_that_keeps_failing_is_synthesis_failed(
    server: OpenAIServer, registry: ModelRegistry
) -> None:
    server.script("p/1", "panel answer")
    server.script("synth/model", Reply(f"Broken off, key {SECRET}", fault="sse_error"))
    errors = ErrorLog()
    tokens, final = await stream_run(registry, ["p/1"], {"callbacks": [errors]})
    result = result_of(final)
    assert result.failure_reason == "synthesis_failed" and final["answer"] == ""
    assert result.analysis is not None and result.responses[0].content == "panel answer"
    assert errors.errors and SECRET not in errors.text() + result.to_json()


async def test_a_second_question_on_a_thread_gets_its_own_run(
    server: OpenAIServer, registry: ModelRegistry
) -> None:
    from langgraph.checkpoint.memory import InMemorySaver

    server.script("p/1", "first answer", "second answer")
    graph = build_fusion_graph(model_factory=registry, checkpointer=InMemorySaver())
    config: Any = {"configurable": {"thread_id": "t"}}
    first = await graph.ainvoke(
        {"messages": [HumanMessage("one?")]}, config, context=context(["p/1"])
    )
    second = await graph.ainvoke(
        {"messages": [HumanMessage("two?")]}, config, context=context(["p/1"])
    )
    assert result_of(first).responses[0].content == "first answer"
    assert result_of(second).responses[0].content == "second answer"
    assert second["answer"] == ANSWER


def test_results_refuse_a_reason_outside_the_closed_set() -> None:
    from pydantic import ValidationError

    from langfusion.graph.schema import FailedModel, FusionResult

    with pytest.raises(ValidationError):
        FailedModel(model="m", error="e", failure_reason="error")  # type: ignore[arg-type]
    with pytest.raises(ValidationError):
        FusionResult.failure("e", "internal_error")  # type: ignore[arg-type]
    ok = FusionResult.failure("e", "all_panels_failed")
    assert json.loads(ok.to_json())["failure_reason"] == "all_panels_failed"


@pytest.mark.parametrize(
    ("error", "reason", "transient"),
    [
        ("ConnectError", "connection_error", True),
        ("ReadError", "connection_error", True),
        ("RemoteProtocolError", "connection_error", True),
        ("ReadTimeout", "timeout", False),
    ],
)
def test_raw_httpx2_errors_are_classified_and_retried_like_the_sdks(
    error: str, reason: str, transient: bool
) -> None:
    httpx2 = pytest.importorskip("httpx2")
    from langfusion.graph.errors import classify, is_transient

    exc = getattr(httpx2, error)("peer closed the connection")
    assert classify(exc)[0] == reason
    assert is_transient(exc) is transient


async def test_a_synthesis_cut_by_a_raw_transport_error_is_retried_by_the_graph() -> None:
    httpx2 = pytest.importorskip("httpx2")
    from tests.fakes import FakeFactory, ScriptedModel

    cut = httpx2.RemoteProtocolError("peer closed connection without sending complete body")
    synth = ScriptedModel(replies=[cut, ANSWER])
    factory = FakeFactory(
        {
            "p/1": ScriptedModel(replies=["panel answer"]),
            "p/2": ScriptedModel(replies=[httpx2.ConnectError("connection refused")]),
            "judge/model": ScriptedModel(replies=[verdict()]),
            "synth/model": synth,
        }
    )
    graph = build_fusion_graph(model_factory=factory)
    out = await graph.ainvoke(
        {"messages": [HumanMessage(QUESTION)]}, context=context(["p/1", "p/2"])
    )
    assert out["answer"] == ANSWER and result_of(out).failure_reason is None
    assert len(synth.calls) == 2  # the cut attempt, then the retry
    (failed,) = result_of(out).failed_models
    assert (failed.model, failed.failure_reason) == ("p/2", "connection_error")
