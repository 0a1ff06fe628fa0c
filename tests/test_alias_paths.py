"""The model alias on every call path, over the loopback wire: what a LangChain caller gets.

Each of ``invoke``, ``ainvoke``, ``stream``, ``astream``, ``batch`` and
``abatch`` must give the same answer, ``usage_metadata`` totalling every call,
``response_metadata["model_name"]`` and a usage callback that counts it once.
Where the pipeline's runs and progress events go is LangChain's to say: under
the alias's own run where it hands the alias a run manager (``invoke``,
``ainvoke``, ``batch``, ``abatch``); on ``stream``/``astream``, where a chat-model
run is a leaf, under the run that called the alias, beside its own.
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
from langchain_core.runnables import RunnableLambda
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
RUN_MANAGER_PATHS = ["invoke", "ainvoke", "batch", "abatch"]
STREAM_PATHS = ["stream", "astream"]
PATHS = RUN_MANAGER_PATHS + STREAM_PATHS


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
    """What a caller's handler sees: every run with its parent, the tokens and the events."""

    def __init__(self) -> None:
        self.parent: dict[UUID, UUID | None] = {}
        self.name: dict[UUID, str] = {}
        self.models: list[UUID] = []
        self.tokens: dict[UUID, list[str]] = {}
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

    def on_llm_new_token(self, token: str, *, run_id: UUID, **kw: Any) -> None:
        with self._lock:
            self.tokens.setdefault(run_id, []).append(token)

    def on_custom_event(self, name: str, data: Any, *, run_id: UUID, **kw: Any) -> None:
        if name == "langfusion":
            with self._lock:
                self.events.append((run_id, data))

    def ancestors(self, run_id: UUID) -> list[UUID]:
        chain = []
        while (run_id := self.parent.get(run_id)) is not None:  # type: ignore[assignment]
            chain.append(run_id)
        return chain

    def under(self, run_id: UUID) -> set[str]:
        """The names of every run nested under ``run_id``."""
        return {self.name[r] for r in self.parent if run_id in self.ancestors(r)}

    def aliases(self) -> list[UUID]:
        """The alias's own runs, in the order they started."""
        return [r for r in self.models if self.name[r] == "FusionChatModel"]

    def progress(self, run_id: UUID) -> list[str]:
        """The progress events dispatched under ``run_id``."""
        return [data["event"] for run, data in self.events if run == run_id]


PIPELINE = {"fusion", *PANEL, "judge/model", "synth/model"}


def assert_progress(events: list[str]) -> None:
    assert sorted(e for e in events if e.startswith("panel")) == EVENTS
    assert events[-3:] == ["judge_started", "judge_finished", "synthesis_started"]


def assert_answers(messages: list[Any], counted: Any) -> None:
    for message in messages:
        assert message.content == ANSWER
        assert message.usage_metadata == USAGE
        assert message.response_metadata["model_name"] == MODEL_NAME
        assert message.response_metadata["fusion"]["status"] == "ok"
    # Counted once per call, under the alias's name: the pipeline's own calls are in it.
    total = {k: v * len(messages) for k, v in USAGE.items()}
    assert {k: dict(v) for k, v in counted.usage_metadata.items()} == {MODEL_NAME: total}


def called_by_a_chain(llm: FusionChatModel) -> Any:
    """The alias as the last step of a chain: the run that calls it."""
    return (RunnableLambda(lambda question: question) | llm).with_config(run_name="caller")


@pytest.mark.parametrize("called", ["directly", "by a chain"])
@pytest.mark.parametrize("path", RUN_MANAGER_PATHS)
def test_where_the_alias_gets_a_run_manager_the_pipeline_nests_under_its_run(
    server: OpenAIServer, path: str, called: str
) -> None:
    llm = alias(server)
    runs = Runs()
    with get_usage_metadata_callback() as counted:
        caller = llm if called == "directly" else called_by_a_chain(llm)
        messages = answers(caller, path, {"callbacks": [runs]})

    assert_answers(messages, counted)
    roots = runs.aliases()
    assert len(roots) == len(messages)
    for root in roots:
        parent = runs.parent[root]
        assert (parent is None) if called == "directly" else (runs.name[parent] == "caller")
        assert PIPELINE <= runs.under(root), runs.under(root)
        assert_progress(runs.progress(root))
        assert "".join(runs.tokens[root]) == ANSWER
    assert len(server.requests_for("synth/model")) == len(messages)


@pytest.mark.parametrize("path", STREAM_PATHS)
def test_a_stream_nests_the_pipeline_under_its_caller_beside_the_alias_run(
    server: OpenAIServer, path: str
) -> None:
    # LangChain calls _stream without a run manager: the alias's run is a leaf.
    runs = Runs()
    with get_usage_metadata_callback() as counted:
        messages = answers(called_by_a_chain(alias(server)), path, {"callbacks": [runs]})

    assert_answers(messages, counted)
    (run,) = runs.aliases()
    assert runs.under(run) == set()
    assert "".join(runs.tokens[run]) == ANSWER
    caller = runs.parent[run]
    assert caller is not None and runs.name[caller] == "caller"
    assert PIPELINE <= runs.under(caller), runs.under(caller)
    assert_progress(runs.progress(caller))


@pytest.mark.parametrize("path", STREAM_PATHS)
def test_a_stream_called_directly_shows_its_callbacks_the_answer_only(
    server: OpenAIServer, path: str
) -> None:
    # No run called the alias, so the pipeline nests under none: the callbacks
    # handed to stream() see the alias's run and its tokens, and nothing else.
    runs = Runs()
    with get_usage_metadata_callback() as counted:
        messages = answers(alias(server), path, {"callbacks": [runs]})

    assert_answers(messages, counted)
    (run,) = runs.aliases()
    assert list(runs.name) == [run] and runs.events == []
    assert "".join(runs.tokens[run]) == ANSWER
    assert len(server.requests_for("synth/model")) == 1


@pytest.mark.slow
@pytest.mark.parametrize(
    ("path", "traced_by"),
    [
        *((path, "a tracer") for path in PATHS),
        ("invoke", "context"),
        ("astream", "context"),
    ],
)
def test_every_call_path_traces_the_pipeline_in_langsmith(
    server: OpenAIServer, path: str, traced_by: str
) -> None:
    streamed = path in STREAM_PATHS
    with CaptureServer() as capture:
        client = Client(api_url=capture.url, api_key="lsv2-test", auto_batch_tracing=False)
        if traced_by == "a tracer":
            tracer = LangChainTracer(client=client, project_name="langfusion-tests")
            llm = called_by_a_chain(alias(server)) if streamed else alias(server)
            messages = answers(llm, path, {"callbacks": [tracer]})
            tracer.wait_for_futures()
        else:  # as LANGSMITH_TRACING=true does it
            with tracing_context(client=client, project_name="langfusion-tests", enabled=True):
                messages = answers(alias(server), path, {})
            wait_for_all_tracers()
        client.flush()
        traced = capture.runs()
    assert [m.content for m in messages] == [ANSWER] * len(messages)
    roots = [r for r in traced.values() if not r.get("parent_run_id")]
    aliases = [r for r in traced.values() if r["name"] == "FusionChatModel"]
    assert len(aliases) == len(messages)
    if not streamed:  # each alias run is a trace, the pipeline's runs inside it
        assert [(r["run_type"], r["name"]) for r in roots] == [("llm", "FusionChatModel")] * len(
            messages
        )
    elif traced_by == "a tracer":  # one trace: the caller's, the alias and the pipeline in it
        assert [(r["run_type"], r["name"]) for r in roots] == [("chain", "caller")]
    else:  # nothing called the alias: its run and the pipeline are two traces
        assert sorted((r["run_type"], r["name"]) for r in roots) == [
            ("chain", "fusion"),
            ("llm", "FusionChatModel"),
        ]
    for run in aliases:
        usage = run["outputs"]["generations"][0][0]["message"]["kwargs"]["usage_metadata"]
        assert usage == USAGE
        children = [r for r in traced.values() if r.get("parent_run_id") == run["id"]]
        # The pipeline's graph: under the alias's run, else beside it (a root when alone).
        home = run.get("parent_run_id") if streamed else run["id"]
        (graph,) = [
            r
            for r in traced.values()
            if (r["run_type"], r["name"]) == ("chain", "fusion") and r.get("parent_run_id") == home
        ]
        assert children == [] if streamed else graph in children  # a streamed run is a leaf
        called = [
            metadata["fusion_model"]
            for r in traced.values()
            if r["trace_id"] == graph["trace_id"]
            and r["run_type"] == "llm"
            and "fusion_model" in (metadata := (r.get("extra") or {}).get("metadata") or {})
        ]
        assert sorted(called) == sorted([*PANEL, "judge/model", "synth/model"])


@pytest.mark.parametrize("path", STREAM_PATHS)
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


@pytest.mark.slow
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


@pytest.mark.parametrize("called", ["by a chain", "directly"])
async def test_astream_events_carries_the_answer_tokens_and_the_caller_the_progress(
    server: OpenAIServer, called: str
) -> None:
    llm = alias(server)
    runnable = called_by_a_chain(llm) if called == "by a chain" else llm
    tokens, progress = [], []
    async for event in runnable.astream_events(QUESTION, version="v2"):
        if event["event"] == "on_chat_model_stream" and event["name"] == "FusionChatModel":
            tokens.append(str(event["data"]["chunk"].content))
        elif event["event"] == "on_custom_event" and event["name"] == "langfusion":
            progress.append(event["data"]["event"])
    assert "".join(tokens) == ANSWER
    if called == "by a chain":
        assert_progress(progress)
    else:  # the alias's run is a leaf and nothing called it: the progress goes to no run
        assert progress == []


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("bad", [b"\x00", [42], [{"role": "wizard", "content": "hi"}]])
def test_input_that_is_no_conversation_is_refused_before_any_model_is_called(
    server: OpenAIServer, path: str, bad: Any
) -> None:
    # LangChain reads the input into messages before the alias runs, and refuses
    # what it cannot read in its own words.
    with pytest.raises((ValueError, NotImplementedError), match="message"):
        answers(alias(server), path, {}, question=bad)
    assert not server.requests


@pytest.mark.parametrize("path", PATHS)
def test_an_empty_conversation_is_refused_in_words_on_every_path(
    server: OpenAIServer, path: str
) -> None:
    with pytest.raises(ValueError, match="messages is empty") as refused:
        answers(alias(server), path, {}, question=[])
    assert "chat message" in str(refused.value)
    assert not server.requests  # refused before any model was called
