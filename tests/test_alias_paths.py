"""The model alias on every call path, over the loopback wire: what a LangChain caller gets.

Each of ``invoke``, ``ainvoke``, ``stream``, ``astream``, ``batch`` and
``abatch`` must give the same answer, the same progress events, the
pipeline's runs nested under the alias's own run, ``usage_metadata`` totalling
every call, ``response_metadata["model_name"]`` and a usage callback that
counts it once.
"""

from __future__ import annotations

import asyncio
import functools
import operator
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any
from uuid import UUID

import pytest
from langchain_core.callbacks import BaseCallbackHandler, get_usage_metadata_callback
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage
from langchain_core.tracers import LangChainTracer
from langchain_core.tracers.langchain import wait_for_all_tracers
from langsmith import Client
from langsmith.run_helpers import tracing_context

from langfusion.graph import ModelRegistry
from langfusion.tools import FusionChatModel, FusionError, FusionTool
from tests.fakes import verdict
from tests.langsmith_capture import CaptureServer
from tests.openai_server import OpenAIServer, Recorded, Reply

QUESTION = "Should a five-person team run its own Kubernetes cluster?"
ANSWER = "No: a managed platform costs less than the hours a cluster takes."
PANEL = ("p/one", "p/two")
# Four model calls (two panel answers, the judge, the synthesis), each 11 tokens in, 7 out.
USAGE = {"input_tokens": 44, "output_tokens": 28, "total_tokens": 72}
MODEL_NAME = "fusion:synth/model"
EVENTS = sorted(["panel_started"] * 2 + ["panel_finished"] * 2)
PATHS = ["invoke", "ainvoke", "stream", "astream", "batch", "abatch"]


@pytest.fixture
def server(monkeypatch: pytest.MonkeyPatch) -> Iterator[OpenAIServer]:
    monkeypatch.setenv("OPENROUTER_API_KEY", "sk-or-test-0123456789")
    with OpenAIServer() as running:
        running.script("p/one", "Managed: the team is too small to run it.")
        running.script("p/two", "Managed, unless compliance forbids it.")
        running.script("judge/model", verdict())
        running.script("synth/model", ANSWER)
        yield running


def alias(server: OpenAIServer, **kw: Any) -> FusionChatModel:
    params: dict[str, Any] = {
        "analysis_models": list(PANEL),
        "model": "judge/model",
        "synthesis_model": "synth/model",
        "web_tools": False,
        "model_factory": ModelRegistry(base_url=server.base_url),
    }
    return FusionChatModel(**(params | kw))


def answers(llm: Any, path: str, config: dict[str, Any], question: Any = QUESTION) -> list[Any]:
    """The messages one call path returns (a stream's chunks added up), one per question."""
    merge: Callable[[list[Any]], Any] = lambda chunks: functools.reduce(operator.add, chunks)  # noqa: E731

    async def astream() -> Any:
        return merge([c async for c in llm.astream(question, config)])

    calls: dict[str, Callable[[], list[Any]]] = {
        "invoke": lambda: [llm.invoke(question, config)],
        "ainvoke": lambda: [asyncio.run(llm.ainvoke(question, config))],
        "stream": lambda: [merge(list(llm.stream(question, config)))],
        "astream": lambda: [asyncio.run(astream())],
        "batch": lambda: llm.batch([question, question], config),
        "abatch": lambda: asyncio.run(llm.abatch([question, question], config)),
    }
    return calls[path]()


class Runs(BaseCallbackHandler):
    """What a caller's handler sees: every run with its parent, and the custom events."""

    def __init__(self) -> None:
        self.parent: dict[UUID, UUID | None] = {}
        self.name: dict[UUID, str] = {}
        self.models: list[UUID] = []
        self.events: list[tuple[UUID, dict[str, Any]]] = []
        self._lock = threading.Lock()

    def _start(self, run_id: UUID, parent: UUID | None, name: str) -> None:
        with self._lock:
            self.parent[run_id], self.name[run_id] = parent, name

    def on_chain_start(
        self, serialized: Any, inputs: Any, *, run_id: UUID, parent_run_id: Any = None, **kw: Any
    ) -> None:
        self._start(run_id, parent_run_id, kw.get("name") or "chain")

    def on_chat_model_start(
        self, serialized: Any, messages: Any, *, run_id: UUID, parent_run_id: Any = None, **kw: Any
    ) -> None:
        self._start(run_id, parent_run_id, kw.get("name") or serialized.get("name", "model"))
        with self._lock:
            self.models.append(run_id)

    def on_custom_event(self, name: str, data: Any, *, run_id: UUID, **kw: Any) -> None:
        if name == "langfusion":
            with self._lock:
                self.events.append((run_id, data))

    def ancestors(self, run_id: UUID) -> list[UUID]:
        chain = []
        while (run_id := self.parent.get(run_id)) is not None:  # type: ignore[assignment]
            chain.append(run_id)
        return chain

    def aliases(self) -> list[UUID]:
        """The alias's own runs: the chat-model runs under no other chat-model run."""
        return [r for r in self.models if not set(self.ancestors(r)) & set(self.models)]


@pytest.mark.parametrize("path", PATHS)
def test_every_call_path_gives_the_same_answer_events_usage_and_nesting(
    server: OpenAIServer, path: str
) -> None:
    llm = alias(server)
    runs = Runs()
    with get_usage_metadata_callback() as counted:
        messages = answers(llm, path, {"callbacks": [runs]})

    for message in messages:
        assert message.content == ANSWER
        assert message.usage_metadata == USAGE
        assert message.response_metadata["model_name"] == MODEL_NAME
        assert message.response_metadata["fusion"]["status"] == "ok"
    # Counted once per call, under the alias's name: the pipeline's own calls are in it.
    total = {k: v * len(messages) for k, v in USAGE.items()}
    assert {k: dict(v) for k, v in counted.usage_metadata.items()} == {MODEL_NAME: total}

    roots = runs.aliases()
    assert len(roots) == len(messages)
    for root in roots:
        nested = {runs.name[r] for r in runs.parent if root in runs.ancestors(r)}
        assert {"fusion", *PANEL, "judge/model", "synth/model"} <= nested, nested
        events = [data["event"] for run, data in runs.events if run == root]
        assert sorted(e for e in events if e.startswith("panel")) == EVENTS
        assert events[-3:] == ["judge_started", "judge_finished", "synthesis_started"]
    assert len(server.requests_for("synth/model")) == len(messages)


@pytest.mark.parametrize(
    ("path", "traced_by"),
    [*((path, "a tracer") for path in PATHS), ("invoke", "context"), ("astream", "context")],
)
def test_every_call_path_nests_the_pipeline_under_the_alias_in_langsmith(
    server: OpenAIServer, path: str, traced_by: str
) -> None:
    with CaptureServer() as capture:
        client = Client(api_url=capture.url, api_key="lsv2-test", auto_batch_tracing=False)
        if traced_by == "a tracer":
            tracer = LangChainTracer(client=client, project_name="langfusion-tests")
            messages = answers(alias(server), path, {"callbacks": [tracer]})
            tracer.wait_for_futures()
        else:  # as LANGSMITH_TRACING=true does it
            with tracing_context(client=client, project_name="langfusion-tests", enabled=True):
                messages = answers(alias(server), path, {})
            wait_for_all_tracers()
        client.flush()
        traced = capture.runs()
    assert [m.content for m in messages] == [ANSWER] * len(messages)
    roots = [r for r in traced.values() if not r.get("parent_run_id")]
    assert [(r["run_type"], r["name"]) for r in roots] == [("llm", "FusionChatModel")] * len(
        messages
    )
    for root in roots:
        in_trace = [r for r in traced.values() if r["trace_id"] == root["id"]]
        (graph,) = [r for r in in_trace if r["name"] == "fusion" and r["run_type"] == "chain"]
        assert graph["parent_run_id"] == root["id"]
        called = [r for r in in_trace if r["run_type"] == "llm" and r is not root]
        models = sorted(r["extra"]["metadata"]["fusion_model"] for r in called)
        assert models == sorted([*PANEL, "judge/model", "synth/model"])
        usage = root["outputs"]["generations"][0][0]["message"]["kwargs"]["usage_metadata"]
        assert usage == USAGE


@pytest.mark.parametrize("path", ["stream", "astream"])
def test_an_early_break_from_a_stream_cancels_the_run(server: OpenAIServer, path: str) -> None:
    # The synthesis streams four words, then holds its connection open without a word more.
    server.script("synth/model", Reply(ANSWER, fault="sse_hang", cut_after=4))
    llm = alias(server)
    received: list[str] = []

    async def astream() -> None:
        async for chunk in llm.astream(QUESTION):
            received.append(str(chunk.content))
            break
        await until_async(lambda: synthesis(server).disconnected)

    def stream() -> None:
        for chunk in llm.stream(QUESTION):
            received.append(str(chunk.content))
            break

    # On a thread of its own, so that a break that does not cancel fails here, not hangs.
    consumer = threading.Thread(
        target=stream if path == "stream" else lambda: asyncio.run(astream())
    )
    consumer.start()
    consumer.join(30)
    assert not consumer.is_alive(), "closing the stream did not end the run"
    until(lambda: synthesis(server).disconnected)
    assert received == ["No:"]
    assert synthesis(server).disconnected  # the server saw the connection close
    assert len(server.requests_for("synth/model")) == 1  # cancelled, not retried
    assert not [t for t in threading.enumerate() if t.name == "langfusion-stream"]


def synthesis(server: OpenAIServer) -> Recorded:
    (request,) = server.requests_for("synth/model")
    return request


def until(done: Callable[[], Any], bound_s: float = 30.0) -> None:
    """Wait for ``done`` (a guard against hanging, not a measure of speed)."""
    deadline = time.monotonic() + bound_s
    while not done() and time.monotonic() < deadline:
        time.sleep(0.01)


async def until_async(done: Callable[[], Any], bound_s: float = 30.0) -> None:
    deadline = time.monotonic() + bound_s
    while not done() and time.monotonic() < deadline:
        await asyncio.sleep(0.01)


def as_text(messages: list[BaseMessage]) -> list[str]:
    return [str(m.content) for m in messages]


def test_the_question_may_be_a_conversation(server: OpenAIServer) -> None:
    earlier = [HumanMessage("We run on one VM today."), AIMessage("Noted."), HumanMessage(QUESTION)]
    assert alias(server).invoke(earlier).content == ANSWER
    panel_request = server.requests_for("p/one")[0].body["messages"]
    assert [m["content"] for m in panel_request if m["role"] == "user"][-2:] == [
        "We run on one VM today.",
        QUESTION,
    ]


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize(
    "reply", [Reply("the synthesis broke", status=400), Reply("")], ids=["failed", "empty"]
)
def test_a_failed_or_empty_synthesis_raises_fusion_error_with_the_result(
    server: OpenAIServer, path: str, reply: Reply
) -> None:
    server.script("synth/model", reply)
    with pytest.raises(FusionError) as caught:
        answers(alias(server), path, {})
    result = caught.value.result
    assert (result.status, result.failure_reason) == ("ok", "synthesis_failed")
    assert result.analysis is not None and [r.model for r in result.responses] == list(PANEL)


def test_a_synthesis_cut_midway_and_retried_answers_exactly_the_retry(
    server: OpenAIServer,
) -> None:
    # The first attempt streams three words of its answer and is cut off; the
    # retry writes the same answer in full. Every path gives exactly that answer.
    server.script("synth/model", Reply(ANSWER, fault="sse_cut", cut_after=3), Reply(ANSWER))
    llm = alias(server)
    for path in PATHS:
        before = len(server.requests_for("synth/model"))
        assert as_text(answers(llm, path, {})) == [ANSWER] * (2 if "batch" in path else 1)
        server.script("synth/model", Reply(ANSWER, fault="sse_cut", cut_after=3), Reply(ANSWER))
        assert len(server.requests_for("synth/model")) - before >= 2, path


def test_a_retry_that_writes_another_answer_never_reaches_a_stream_as_the_answer(
    server: OpenAIServer,
) -> None:
    cut = Reply("A cluster gives the team control", fault="sse_cut", cut_after=3)
    server.script("synth/model", cut, Reply(ANSWER))
    assert alias(server).invoke(QUESTION).content == ANSWER  # the retry's answer, whole
    server.script("synth/model", cut, Reply(ANSWER))
    streamed: list[str] = []
    with pytest.raises(FusionError, match="retry wrote a different answer") as caught:
        for chunk in alias(server).stream(QUESTION):
            streamed.append(str(chunk.content))
    assert "".join(streamed) == "A cluster gives"  # what was sent before the cut, no more
    assert caught.value.result.status == "ok"
    assert caught.value.answer == ANSWER  # the retry's answer is not lost

    async def astream() -> None:
        async for chunk in alias(server).astream(QUESTION):
            streamed.append(str(chunk.content))

    server.script("synth/model", cut, Reply(ANSWER))
    streamed.clear()
    with pytest.raises(FusionError, match="retry wrote a different answer") as caught:
        asyncio.run(astream())
    assert "".join(streamed) == "A cluster gives" and caught.value.answer == ANSWER


def sockets() -> int:
    import os

    count = 0
    for fd in os.listdir("/proc/self/fd"):
        try:
            count += os.readlink(f"/proc/self/fd/{fd}").startswith("socket:")
        except OSError:
            pass
    return count


def test_sync_paths_leave_no_thread_or_socket_behind(server: OpenAIServer) -> None:
    llm = alias(server)
    tool = FusionTool(
        analysis_models=list(PANEL),
        model="judge/model",
        web_tools=False,
        model_factory=ModelRegistry(base_url=server.base_url),
    )
    llm.invoke(QUESTION)  # warm: imports, the shared sync clients
    tool.invoke({"prompt": QUESTION})
    threads, open_sockets = threading.active_count(), sockets()
    for _ in range(3):
        llm.invoke(QUESTION)
        list(llm.stream(QUESTION))
        llm.batch([QUESTION, QUESTION])
        for _chunk in llm.stream(QUESTION):
            break
        tool.invoke({"prompt": QUESTION})
    until(lambda: threading.active_count() <= threads and sockets() <= open_sockets)
    assert threading.active_count() <= threads
    assert sockets() <= open_sockets


async def test_astream_events_carries_the_answer_tokens_and_the_progress(
    server: OpenAIServer,
) -> None:
    tokens, progress = [], []
    async for event in alias(server).astream_events(QUESTION, version="v2"):
        if event["event"] == "on_chat_model_stream" and event["name"] == "FusionChatModel":
            tokens.append(str(event["data"]["chunk"].content))
        elif event["event"] == "on_custom_event" and event["name"] == "langfusion":
            progress.append(event["data"]["event"])
    assert "".join(tokens) == ANSWER
    assert sorted(e for e in progress if e.startswith("panel")) == EVENTS
    assert progress[-3:] == ["judge_started", "judge_finished", "synthesis_started"]


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("bad", [b"\x00", [42], [], [{"role": "wizard", "content": "hi"}]])
def test_input_that_is_no_conversation_is_refused_in_words_on_every_path(
    server: OpenAIServer, path: str, bad: Any
) -> None:
    with pytest.raises(ValueError, match="messages") as refused:
        answers(alias(server), path, {}, question=bad)
    assert "chat message" in str(refused.value)
    assert not server.requests  # refused before any model was called
