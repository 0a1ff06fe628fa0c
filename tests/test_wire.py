"""The pipeline over real HTTP, against a scripted OpenAI-compatible server on 127.0.0.1."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from typing import Any

import pytest
from langchain_core.messages import HumanMessage
from langchain_openai import ChatOpenAI

from langfusion.graph import (
    FusionContext,
    FusionResult,
    ModelRegistry,
    build_fusion_graph,
    result_markdown,
)
from langfusion.graph.models.transport import call_deadline
from tests.fakes import result_of, verdict
from tests.openai_server import OpenAIServer, Reply

SECRET = "sk-or-v1-TESTSECRET0123456789abcdef"
QUESTION = "Is nuclear power safer per TWh than wind?"


@pytest.fixture
def server() -> Iterator[OpenAIServer]:
    with OpenAIServer() as running:
        running.script("judge/model", verdict())
        running.script("synth/model", "the synthesis")
        yield running


@pytest.fixture
def registry(server: OpenAIServer, monkeypatch: pytest.MonkeyPatch) -> ModelRegistry:
    monkeypatch.setenv("OPENROUTER_API_KEY", SECRET)
    return ModelRegistry(base_url=server.base_url)


async def fuse(registry: ModelRegistry, panel: list[str], **kw: Any) -> dict[str, Any]:
    graph = build_fusion_graph(model_factory=registry, web_tools=[])
    context = FusionContext(
        analysis_models=panel, model="judge/model", synthesis_model="synth/model", **kw
    )
    return await graph.ainvoke({"messages": [HumanMessage(QUESTION)]}, context=context)


def dumped(out: dict[str, Any]) -> str:
    return json.dumps(result_of(out).model_dump(mode="json")) + out["answer"]


async def test_panel_calls_overlap_in_time(server: OpenAIServer, registry: ModelRegistry) -> None:
    for name in ("p/1", "p/2", "p/3"):
        server.script(name, f"answer from {name}", latency_s=0.6)
    out = await fuse(registry, ["p/1", "p/2", "p/3"])
    assert result_of(out).status == "ok"
    assert [r.content for r in result_of(out).responses] == [
        f"answer from p/{i}" for i in (1, 2, 3)
    ]
    panel = [r for r in server.requests if r.model.startswith("p/")]
    # Every panel call started before any of them was answered: they ran at once.
    assert max(r.started for r in panel) < min(r.finished for r in panel)


async def test_every_request_carries_the_depth_header_and_synthesis_has_no_tools(
    server: OpenAIServer, registry: ModelRegistry
) -> None:
    server.script("p/1", "one")
    await fuse(registry, ["p/1"])
    assert {r.model for r in server.requests} == {"p/1", "judge/model", "synth/model"}
    assert all(r.headers.get("x-fusion-depth") == "1" for r in server.requests)
    synth = server.requests_for("synth/model")[0].body
    assert "tools" not in synth and "tool_choice" not in synth
    judge = server.requests_for("judge/model")[0].body
    assert judge["temperature"] == 0
    assert judge["response_format"]["type"] == "json_schema"


async def test_partial_failure_keeps_the_survivors(
    server: OpenAIServer, registry: ModelRegistry
) -> None:
    server.script("ok/model", "fine")
    server.script("down/model", Reply("overloaded", status=503))
    server.script("bad/model", Reply("unknown parameter", status=400))
    out = await fuse(registry, ["ok/model", "down/model", "bad/model"])
    result = result_of(out)
    assert result.status == "ok" and [r.model for r in result.responses] == ["ok/model"]
    reasons = {f.model: f.failure_reason for f in result.failed_models}
    assert reasons == {"down/model": "upstream_error", "bad/model": "invalid_request"}
    assert len(server.requests_for("down/model")) == 3  # retried
    assert len(server.requests_for("bad/model")) == 1  # a 400 is never retried
    assert out["answer"] == "the synthesis"


async def test_rate_limit_honours_retry_after_then_succeeds(
    server: OpenAIServer, registry: ModelRegistry
) -> None:
    server.script(
        "busy/model", Reply("slow down", status=429, headers={"Retry-After": "0.8"}), "made it"
    )
    out = await fuse(registry, ["busy/model"])
    assert result_of(out).responses[0].content == "made it"
    first, second = server.requests_for("busy/model")
    assert second.started - first.finished >= 0.8


async def test_retry_after_beyond_the_deadline_fails_fast(
    server: OpenAIServer, registry: ModelRegistry
) -> None:
    server.script("ok/model", "fine")
    server.script("busy/model", Reply("slow down", status=429, headers={"Retry-After": "120"}))
    out = await fuse(registry, ["ok/model", "busy/model"], timeout_s=5)
    assert result_of(out).failed_models[0].failure_reason == "rate_limited"
    (only,) = server.requests_for("busy/model")  # no retry: the wait outlasts the deadline
    # The run went on as soon as the one attempt was answered, without waiting.
    assert only.finished <= server.requests_for("judge/model")[0].started


@pytest.mark.parametrize("retries", [0, 1])
async def test_max_retries_is_how_often_each_model_call_is_tried_again(
    server: OpenAIServer, registry: ModelRegistry, retries: int
) -> None:
    server.script("ok/model", "fine")
    server.script("down/model", Reply("upstream broke", status=500))
    out = await fuse(registry, ["ok/model", "down/model"], max_retries=retries)
    (failed,) = result_of(out).failed_models
    assert (failed.model, failed.failure_reason, failed.status_code) == (
        "down/model",
        "upstream_error",
        500,
    )
    assert len(server.requests_for("down/model")) == 1 + retries
    assert len(server.requests_for("ok/model")) == 1


@pytest.mark.parametrize(("status", "code"), [(429, "rate_limited"), (402, "insufficient_credits")])
async def test_every_panel_failing_the_same_way_names_that_reason(
    server: OpenAIServer, registry: ModelRegistry, status: int, code: str
) -> None:
    for name in ("p/1", "p/2"):
        server.script(name, Reply("no", status=status))
    out = await fuse(registry, ["p/1", "p/2"])
    data = result_of(out).model_dump(mode="json")
    assert data["status"] == "error" and data["failure_reason"] == code
    assert len(data["failed_models"]) == 2
    assert not server.requests_for("judge/model")


async def test_a_hanging_model_times_out_and_the_rest_go_on(
    server: OpenAIServer, registry: ModelRegistry
) -> None:
    server.script("ok/model", "the one answer that came")
    server.script("hang/model", Reply(hang=True))
    out = await fuse(registry, ["ok/model", "hang/model"], timeout_s=1.0)
    assert result_of(out).failed_models[0].failure_reason == "timeout"
    assert result_of(out).status == "ok"
    # The judge compared the one answer that came; the deadline closed the hanging connection
    # (the server sees that close on its own schedule, so it is awaited, not ordered).
    assert [r.model for r in result_of(out).responses] == ["ok/model"]
    (judged,) = server.requests_for("judge/model")
    assert "the one answer that came" in json.dumps(judged.body)
    (hung,) = server.requests_for("hang/model")
    for _ in range(3000):
        if hung.disconnected:
            break
        await asyncio.sleep(0.01)
    assert hung.disconnected, "the deadline did not close the hanging connection"


@pytest.mark.parametrize(
    ("judge_reply", "code"),
    [
        (Reply("Here is my analysis: consensus is..."), "judge_not_valid_json"),
        (Reply(json.dumps({"consensus": "one string"})), "judge_schema_mismatch"),
        (Reply(""), "judge_empty_completion"),
        (Reply("upstream broke", status=502), "judge_upstream_error"),
    ],
)
async def test_judge_failure_codes_over_http(
    server: OpenAIServer, registry: ModelRegistry, judge_reply: Reply, code: str
) -> None:
    server.script("p/1", "panel answer")
    server.script("judge/model", judge_reply)
    out = await fuse(registry, ["p/1"])
    result = result_of(out)
    assert result.status == "ok" and result.analysis is None and result.failure_reason == code
    assert result.responses[0].content == "panel answer"
    assert out["answer"] == "the synthesis"


async def test_judge_falls_back_to_tool_calling_without_json_schema_support(
    server: OpenAIServer, registry: ModelRegistry
) -> None:
    server.script("p/1", "panel answer")
    server.script(
        "judge/model",
        Reply("response_format json_schema is not supported", status=400),
        verdict(unique_insights=[{"model": "Response A", "insight": "only one"}]),
    )
    out = await fuse(registry, ["p/1"])
    assert result_of(out).analysis is not None
    first, second = server.requests_for("judge/model")
    assert first.body["response_format"]["type"] == "json_schema"
    assert second.body["tool_choice"]["type"] == "function"
    assert result_of(out).analysis.unique_insights[0].model == "p/1"


async def test_no_secret_in_results_or_errors(
    server: OpenAIServer, registry: ModelRegistry
) -> None:
    server.script("p/1", "fine")
    server.script(
        "p/2",
        Reply(f"Incorrect API key provided: {SECRET}. Authorization: Bearer {SECRET}", status=401),
    )
    out = await fuse(registry, ["p/1", "p/2"])
    assert server.requests_for("p/2")[0].headers["authorization"] == f"Bearer {SECRET}"
    assert result_of(out).failed_models[0].failure_reason == "unauthorized"
    assert SECRET not in dumped(out)
    assert SECRET[:12] not in dumped(out)


async def test_missing_key_refuses_before_any_request(
    server: OpenAIServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    registry = ModelRegistry(base_url=server.base_url)
    out = await fuse(registry, ["p/1"])
    data = result_of(out).model_dump(mode="json")
    assert data["status"] == "error" and data["failure_reason"] == "missing_api_key"
    assert "OPENROUTER_API_KEY" in data["error"] and "local" in data["error"]
    assert server.requests == []


async def test_registered_base_url_and_ready_model(
    server: OpenAIServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    from langchain_openai import ChatOpenAI

    registry = ModelRegistry(base_url="http://127.0.0.1:9/unused")
    registry.register("mine/a", server.base_url, model_name="served-a")
    ready = ChatOpenAI(
        model="ready-b",
        base_url=server.base_url,
        api_key="x",
        max_retries=0,
        timeout=5,  # type: ignore[arg-type]
        default_headers={"x-own": "kept"},
    )
    registry.register("mine/b", ready)
    registry.register("judge/model", server.base_url)
    registry.register("synth/model", server.base_url)
    server.script("served-a", "A speaks")
    server.script("ready-b", "B speaks")
    out = await fuse(registry, ["mine/a", "mine/b"])
    assert [r.content for r in result_of(out).responses] == ["A speaks", "B speaks"]
    assert [r.model for r in result_of(out).responses] == ["mine/a", "mine/b"]
    assert server.requests_for("ready-b")[0].headers["x-own"] == "kept"
    assert server.requests_for("served-a")[0].headers["x-fusion-depth"] == "1"


@pytest.mark.parametrize("streamed", [False, True], ids=["whole", "streamed"])
async def test_the_cost_a_provider_reports_is_kept_per_call_and_totalled(
    server: OpenAIServer, registry: ModelRegistry, streamed: bool
) -> None:
    server.script("p/1", Reply("answer one", cost=0.0125))
    server.script("p/2", Reply("answer two"))  # an endpoint that reports no cost
    server.script("judge/model", Reply(verdict(), cost=0.5))
    server.script("synth/model", Reply("the synthesis", cost=0.25))
    graph = build_fusion_graph(model_factory=registry, web_tools=[])
    # Streamed: the panel and the synthesis answer over SSE, as the playground asks for.
    context = FusionContext(
        analysis_models=["p/1", "p/2"],
        model="judge/model",
        synthesis_model="synth/model",
        stream_panel_tokens=streamed,
    )
    question = {"messages": [HumanMessage(QUESTION)]}
    if streamed:
        parts = [
            part
            async for part in graph.astream(
                question, context=context, stream_mode=["messages", "values"]
            )
        ]
        out = [payload for mode, payload in parts if mode == "values"][-1]
    else:
        out = await graph.ainvoke(question, context=context)
    assert server.requests_for("synth/model")[0].body.get("stream", False) is streamed
    assert server.requests_for("p/1")[0].body.get("stream", False) is streamed
    result = result_of(out)
    costs = {r.model: r.usage.cost for r in result.responses}
    assert costs == {"p/1": 0.0125, "p/2": None}
    assert result.responses[0].usage.total_tokens == 18  # the tokens are kept beside it
    assert (result.usage.judge.cost, result.usage.synthesis.cost) == (0.5, 0.25)
    assert result.usage.total.cost == pytest.approx(0.7625)
    assert json.loads(result.to_json())["usage"]["total"]["cost"] == pytest.approx(0.7625)
    assert "$0.7625 as reported" in result_markdown(result)


@pytest.mark.parametrize("entry", ["graph ainvoke", "graph astream", "alias astream", "tool"])
async def test_tokens_a_provider_does_not_report_are_said_to_be_unreported_not_zero(
    server: OpenAIServer, registry: ModelRegistry, entry: str
) -> None:
    from langfusion.tools import FusionChatModel, FusionTool

    server.script("p/1", Reply("answer one"))
    server.script("p/2", Reply("answer two", usage=False))
    server.script("judge/model", Reply(verdict()))
    # llama.cpp's server sends no token counts on a streamed reply.
    server.script("synth/model", Reply("the synthesis", usage=False))
    names = {"analysis_models": ["p/1", "p/2"], "model": "judge/model"}
    question = {"messages": [HumanMessage(QUESTION)]}
    if entry == "tool":
        tool = FusionTool(**names, model_factory=registry, web_tools=False)
        message = await tool.ainvoke(
            {"name": "fusion", "args": {"prompt": QUESTION}, "id": "c1", "type": "tool_call"}
        )
        result = message.artifact
    elif entry == "alias astream":
        alias = FusionChatModel(
            **names, synthesis_model="synth/model", model_factory=registry, web_tools=False
        )
        chunks = [chunk async for chunk in alias.astream(QUESTION)]
        assert "".join(str(c.content) for c in chunks) == "the synthesis"
        (fusion,) = [
            c.response_metadata["fusion"] for c in chunks if "fusion" in c.response_metadata
        ]
        result = FusionResult.model_validate(fusion)
    else:
        graph = build_fusion_graph(model_factory=registry, web_tools=[])
        context = FusionContext(**names, synthesis_model="synth/model", web_tools=False)
        if entry == "graph astream":
            parts = [
                p async for p in graph.astream(question, context=context, stream_mode="values")
            ]
            out = parts[-1]
        else:
            out = await graph.ainvoke(question, context=context)
        result = result_of(out)
    synthesized = entry != "tool"  # the tool's caller writes the answer
    assert result.status == "ok" and result.analysis is not None
    assert result.usage.unreported == (["panel", "synthesis"] if synthesized else ["panel"])
    assert [r.usage is None for r in result.responses] == [False, True]
    assert result.usage.panel.total_tokens == 18  # p/1's, which it did report
    shown = result_markdown(result)
    assert "panel 18 and some not reported" in shown
    if synthesized:
        assert "synthesis not reported" in shown and "synthesis 0" not in shown
    assert json.loads(result.to_json())["usage"]["unreported"] == result.usage.unreported


async def test_a_run_whose_every_call_reported_its_tokens_says_nothing_is_unreported(
    server: OpenAIServer, registry: ModelRegistry
) -> None:
    out = await fuse(registry, ["p/1", "p/2"])
    result = result_of(out)
    assert result.usage.unreported == [] and result.usage.synthesis.total_tokens > 0
    assert "unreported" not in json.loads(result.to_json())["usage"]
    assert "not reported" not in result_markdown(result)


@pytest.mark.parametrize("cancels", [1, 2, 3])
@pytest.mark.parametrize("built", ["by the registry", "by the caller"])
async def test_a_stream_cancelled_mid_answer_ends_and_closes_its_connection(
    server: OpenAIServer, registry: ModelRegistry, cancels: int, built: str
) -> None:
    # LangGraph's runner and its executor each cancel a node they stop: one cancel or
    # several, the read ends and its connection closes, long before the call's deadline.
    server.script("synth/model", Reply("four words then nothing", fault="sse_hang", cut_after=4))
    if built == "by the caller":  # a ready model, with langchain-openai's defaults
        ready = ChatOpenAI(model="synth/model", base_url=server.base_url, api_key=SECRET)
        registry.register("synth/model", ready)
    model = registry("synth/model", role="synthesis", timeout=600.0)
    first = asyncio.Event()

    async def read() -> None:
        async with call_deadline(600.0):
            async for _ in model.astream(QUESTION):
                first.set()

    reader = asyncio.get_running_loop().create_task(read())
    started = asyncio.ensure_future(first.wait())
    # Bounds against a hang, not measures of speed.
    await asyncio.wait({started, reader}, timeout=60, return_when=asyncio.FIRST_COMPLETED)
    if not first.is_set():
        started.cancel()
        reader.cancel()
        ended = reader.done() and not reader.cancelled()
        raise AssertionError(
            f"no word streamed: {reader.exception()!r}" if ended else "no word in 60 s"
        )
    for _ in range(cancels):
        reader.cancel()
        await asyncio.sleep(0)
    done, _ = await asyncio.wait({reader}, timeout=60)
    assert reader in done, "the cancelled read went on"
    assert reader.cancelled()
    (streamed,) = server.requests_for("synth/model")
    for _ in range(6000):
        if streamed.disconnected:
            break
        await asyncio.sleep(0.01)
    assert streamed.disconnected, "the cancelled stream left its connection open"
