"""A fusion as LangSmith receives it, from the real ``langsmith`` client, on 127.0.0.1."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import textwrap
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from langchain.agents import create_agent
from langchain_core.messages import AIMessage, HumanMessage, ToolMessage
from langchain_core.tracers import LangChainTracer
from langsmith import Client
from langsmith.run_helpers import tracing_context

from langfusion.graph import FusionContext, ModelRegistry, build_fusion_graph
from langfusion.tools import FusionTool
from tests.fakes import ScriptedModel, result_of, verdict
from tests.langsmith_capture import CaptureServer
from tests.openai_server import OpenAIServer, Reply

OPENROUTER_SECRET = "sk-or-v1-TRACESECRET0123456789abcdef"
LANGSMITH_SECRET = "lsv2_pt_TRACESECRET0123456789abcdef"
QUESTION = "Which is safer per TWh, nuclear or wind?"
ANSWER = "Both are far safer than coal per TWh."
PROJECT = "langfusion-tests"
MODELS = [
    ("p/one", "panel"),
    ("p/two", "panel"),
    ("judge/model", "judge"),
    ("synth/model", "synthesis"),
]

Runs = dict[str, dict[str, Any]]


@pytest.fixture
def capture() -> Iterator[CaptureServer]:
    with CaptureServer() as running:
        yield running


@pytest.fixture
def server(monkeypatch: pytest.MonkeyPatch) -> Iterator[OpenAIServer]:
    monkeypatch.setenv("OPENROUTER_API_KEY", OPENROUTER_SECRET)
    with OpenAIServer() as running:
        running.script("p/one", "nuclear, narrowly")
        running.script("p/two", "about even")
        running.script("judge/model", verdict())
        running.script("synth/model", ANSWER)
        yield running


@pytest.fixture
def client(capture: CaptureServer) -> Client:
    return Client(api_url=capture.url, api_key=LANGSMITH_SECRET, auto_batch_tracing=False)


def context(**kw: Any) -> FusionContext:
    return FusionContext(
        analysis_models=["p/one", "p/two"],
        model="judge/model",
        synthesis_model="synth/model",
        web_tools=False,
        **kw,
    )


def metadata(run: dict[str, Any]) -> dict[str, Any]:
    return (run.get("extra") or {}).get("metadata") or {}


def ancestors(runs: Runs, run: dict[str, Any]) -> list[dict[str, Any]]:
    chain = []
    while run.get("parent_run_id"):
        run = runs[run["parent_run_id"]]
        chain.append(run)
    return chain


def named(runs: Runs, name: str, run_type: str | None = None) -> list[dict[str, Any]]:
    return [r for r in runs.values() if r["name"] == name and run_type in (None, r.get("run_type"))]


def tokens(run: dict[str, Any]) -> dict[str, Any]:
    """The token usage LangSmith shows on a model run (from the traced message)."""
    message = run["outputs"]["generations"][0][0]["message"]
    return dict(message["kwargs"]["usage_metadata"])


def assert_no_credentials(capture: CaptureServer, *, upstream_quoted_them: bool = False) -> None:
    raw = capture.raw()
    assert OPENROUTER_SECRET.encode() not in raw
    assert OPENROUTER_SECRET[:16].encode() not in raw
    if upstream_quoted_them:  # the upstream's words survive, the credential does not
        assert not re.search(rb"(?i)bearer\s+(?!\[redacted\])", raw)
    else:
        assert b"bearer" not in raw.lower() and b"authorization" not in raw.lower()
    # The LangSmith key travels only as the header that authenticates to LangSmith.
    for request in capture.received:
        assert LANGSMITH_SECRET.encode() not in request.body
        assert [k.lower() for k, v in request.headers if LANGSMITH_SECRET in v] == ["x-api-key"]


async def traced_fusion(server: OpenAIServer, client: Client) -> dict[str, Any]:
    graph = build_fusion_graph(model_factory=ModelRegistry(base_url=server.base_url))
    tracer = LangChainTracer(client=client, project_name=PROJECT)
    out = await graph.ainvoke(
        {"messages": [HumanMessage(QUESTION)]}, {"callbacks": [tracer]}, context=context()
    )
    client.flush()
    return out


async def test_one_fusion_is_one_readable_trace_tree(
    server: OpenAIServer, capture: CaptureServer, client: Client
) -> None:
    out = await traced_fusion(server, client)
    assert out["answer"] == ANSWER
    runs = capture.runs()

    roots = [r for r in runs.values() if not r.get("parent_run_id")]
    assert [(r["name"], r["run_type"]) for r in roots] == [("fusion", "chain")]
    root = roots[0]
    assert {r["trace_id"] for r in runs.values()} == {root["id"]}
    assert {r["session_name"] for r in runs.values() if "session_name" in r} == {PROJECT}
    assert QUESTION in json.dumps(root["inputs"])
    assert root["outputs"]["answer"] == ANSWER

    fusion_ids = set()
    for slug, role in MODELS:
        (run,) = named(runs, slug)
        assert root in ancestors(runs, run), slug
        meta = metadata(run)
        assert (meta["fusion_role"], meta["fusion_model"], meta["fusion_depth"]) == (role, slug, 0)
        fusion_ids.add(meta["fusion_id"])
        # The model call itself (for the judge, inside its structured-output chain)
        # carries the tokens the loopback server reported.
        (call,) = [
            r
            for r in runs.values()
            if r["run_type"] == "llm" and metadata(r).get("fusion_model") == slug
        ]
        assert metadata(call)["fusion_role"] == role
        usage = tokens(call)
        assert (usage["input_tokens"], usage["output_tokens"], usage["total_tokens"]) == (11, 7, 18)
    (fusion_id,) = fusion_ids
    uuid.UUID(fusion_id)
    tagged = {metadata(r).get("fusion_id") for r in runs.values() if "fusion_role" in metadata(r)}
    assert tagged == {fusion_id}


async def test_the_fusion_tree_nests_under_the_agents_tool_run(
    server: OpenAIServer, capture: CaptureServer, client: Client
) -> None:
    agent_model = ScriptedModel(
        replies=[
            AIMessage(
                "", tool_calls=[{"name": "fusion", "args": {"prompt": QUESTION}, "id": "c1"}]
            ),
            AIMessage("Nuclear, by a little."),
        ]
    )
    fusion = FusionTool(
        analysis_models=["p/one", "p/two"],
        model="judge/model",
        model_factory=ModelRegistry(base_url=server.base_url),
    )
    agent = create_agent(agent_model, tools=[fusion])
    with tracing_context(client=client, project_name=PROJECT, enabled=True):
        out = await agent.ainvoke({"messages": [HumanMessage(QUESTION)]})
    client.flush()
    tool_message = next(m for m in out["messages"] if isinstance(m, ToolMessage))
    assert json.loads(str(tool_message.content))["status"] == "ok"
    runs = capture.runs()

    roots = [r for r in runs.values() if not r.get("parent_run_id")]
    assert len(roots) == 1 and roots[0]["name"] != "fusion"  # the agent is the root
    assert {r["trace_id"] for r in runs.values()} == {roots[0]["id"]}
    (tool_run,) = named(runs, "fusion", "tool")
    (graph_run,) = named(runs, "fusion", "chain")
    assert graph_run["parent_run_id"] == tool_run["id"]
    for slug, role in MODELS[:3]:
        (run,) = named(runs, slug)
        assert graph_run in ancestors(runs, run)
        assert metadata(run)["fusion_role"] == role
    assert not named(runs, "synth/model")  # the agent writes the answer, not a synthesis


async def test_no_key_and_no_authorization_header_reaches_the_trace_endpoint(
    server: OpenAIServer, capture: CaptureServer, client: Client
) -> None:
    out = await traced_fusion(server, client)
    assert out["answer"] == ANSWER
    assert server.requests_for("p/one")[0].headers["authorization"] == f"Bearer {OPENROUTER_SECRET}"
    assert len(capture.runs()) > 10
    assert_no_credentials(capture)


async def test_a_key_echoed_in_an_upstream_error_is_not_traced(
    server: OpenAIServer, capture: CaptureServer, client: Client
) -> None:
    # Some providers quote the credentials they were sent back in a 401.
    server.script(
        "p/two",
        Reply(
            f"Incorrect API key provided: {OPENROUTER_SECRET}. "
            f"Authorization: Bearer {OPENROUTER_SECRET}",
            status=401,
        ),
    )
    out = await traced_fusion(server, client)
    assert result_of(out).failed_models[0].failure_reason == "unauthorized"
    (failed,) = named(capture.runs(), "p/two")
    assert "401" in failed["error"]  # the failure is in the trace, the key is not
    assert_no_credentials(capture, upstream_quoted_them=True)


@pytest.mark.parametrize(
    ("model", "reply"),
    [
        ("p/two", Reply(f"Provider error for key {OPENROUTER_SECRET}", fault="error_body")),
        (
            "synth/model",
            Reply(f"Broken off. Authorization: Bearer {OPENROUTER_SECRET}", fault="sse_error"),
        ),
    ],
    ids=["200-error-body", "stream-error-event"],
)
async def test_a_key_echoed_in_a_200_body_or_a_stream_error_event_is_not_traced(
    server: OpenAIServer, capture: CaptureServer, client: Client, model: str, reply: Reply
) -> None:
    server.script(model, reply)
    graph = build_fusion_graph(model_factory=ModelRegistry(base_url=server.base_url))
    tracer = LangChainTracer(client=client, project_name=PROJECT)
    final: dict[str, Any] = {}
    async for mode, payload in graph.astream(
        {"messages": [HumanMessage(QUESTION)]},
        {"callbacks": [tracer]},
        context=context(),
        stream_mode=["messages", "values"],
    ):
        if mode == "values":
            final = payload
    client.flush()
    if model == "p/two":
        assert result_of(final).failed_models[0].failure_reason == "upstream_error"
    else:
        assert result_of(final).failure_reason == "synthesis_failed"
    (failed, *_) = named(capture.runs(), model, "llm")
    assert failed["error"]  # the failure is in the trace, the key is not
    assert_no_credentials(capture, upstream_quoted_them=True)


TRACED_RUN = textwrap.dedent(
    """
    import asyncio, sys
    from langchain_core.messages import HumanMessage
    from langchain_core.tracers.langchain import wait_for_all_tracers
    from langfusion.graph import FusionContext, build_fusion_graph

    async def main():
        graph = build_fusion_graph(web_tools=[])
        context = FusionContext(
            analysis_models=["p/one", "p/two"], model="judge/model", synthesis_model="synth/model"
        )
        tokens = []
        async for chunk, meta in graph.astream(
            {"messages": [HumanMessage(sys.argv[1])]}, context=context, stream_mode="messages"
        ):
            if meta["langgraph_node"] == "synthesize":
                tokens.append(chunk.text)
        print("".join(tokens))

    asyncio.run(main())
    wait_for_all_tracers()
    """
)


@pytest.mark.slow
@pytest.mark.parametrize("hidden", [("INPUTS",), ("OUTPUTS",), ("INPUTS", "OUTPUTS")])
def test_langsmith_hide_inputs_and_outputs_are_respected(
    server: OpenAIServer, capture: CaptureServer, hidden: tuple[str, ...]
) -> None:
    # A fresh process, configured the way a user configures LangSmith: by environment.
    env = {
        "PATH": os.environ.get("PATH", ""),
        "HOME": os.environ.get("HOME", "/tmp"),
        "OPENROUTER_API_KEY": OPENROUTER_SECRET,
        "OPENROUTER_BASE_URL": server.base_url,
        "LANGSMITH_TRACING": "true",
        "LANGSMITH_ENDPOINT": capture.url,
        "LANGSMITH_API_KEY": LANGSMITH_SECRET,
        "LANGSMITH_PROJECT": PROJECT,
        **{f"LANGSMITH_HIDE_{name}": "true" for name in hidden},
    }
    done = subprocess.run(
        [sys.executable, "-c", TRACED_RUN, QUESTION],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == ANSWER  # hiding changes the trace, not the run
    runs = capture.runs()
    assert {slug for slug, _ in MODELS} <= {r["name"] for r in runs.values()}
    assert any(metadata(r).get("fusion_role") == "synthesis" for r in runs.values())

    shown = {"INPUTS": "inputs", "OUTPUTS": "outputs"}
    for name, field in shown.items():
        present = [r["name"] for r in runs.values() if r.get(field)]
        assert (not present) if name in hidden else ("fusion" in present), (name, present)
    (root,) = [r for r in runs.values() if not r.get("parent_run_id")]
    if "OUTPUTS" not in hidden:
        assert root["outputs"]["answer"] == ANSWER
    if "INPUTS" not in hidden:
        assert QUESTION in json.dumps(root["inputs"])
    # Token counts stay visible for cost tracking, hidden outputs or not.
    synthesis = [r for r in runs.values() if r["run_type"] == "llm" and r["name"] == "synth/model"]
    assert metadata(synthesis[0])["usage_metadata"]["output_tokens"] == 7
    if set(hidden) == set(shown):
        raw = capture.raw()
        for text in (QUESTION, ANSWER, "nuclear, narrowly", "about even", "far safer"):
            assert text.encode() not in raw, text  # not as a field, not as a streamed token
