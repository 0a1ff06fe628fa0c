"""Nothing is left behind: connections, loops, cached models; cancellation closes every call."""

from __future__ import annotations

import asyncio
import gc
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import HumanMessage

from langfusion.graph import FusionContext, ModelRegistry, build_fusion_graph
from langfusion.graph.models import MODEL_CACHE_SIZE, pools
from langfusion.tools import FusionChatModel, FusionTool
from tests.fakes import FakeFactory, ScriptedModel, verdict
from tests.openai_server import OpenAIServer, Reply

SECRET = "sk-or-v1-RESOURCESECRET0123456789abcdef"
QUESTION = "Should a small team run its own Kubernetes cluster?"
ANSWER = "Not unless operating it is part of the product."
WAIT_S = 10.0


@pytest.fixture
def server() -> Iterator[OpenAIServer]:
    with OpenAIServer() as running:
        running.script("p/1", "Use a managed service.")
        running.script("p/2", "Only with a platform engineer.")
        running.script("judge/model", verdict())
        running.script("synth/model", ANSWER)
        yield running


@pytest.fixture
def registry(server: OpenAIServer, monkeypatch: pytest.MonkeyPatch) -> ModelRegistry:
    monkeypatch.setenv("OPENROUTER_API_KEY", SECRET)
    return ModelRegistry(base_url=server.base_url)


PANEL = {"analysis_models": ["p/1", "p/2"], "model": "judge/model", "web_tools": False}


def context(**kw: Any) -> FusionContext:
    return FusionContext(**{**PANEL, "synthesis_model": "synth/model", **kw})


def sockets() -> int:
    """Open socket descriptors of this process (the test server's included)."""
    count = 0
    for fd in os.listdir("/proc/self/fd"):
        try:
            count += os.readlink(f"/proc/self/fd/{fd}").startswith("socket:")
        except OSError:
            continue
    return count


def eventually(condition: Callable[[], bool], what: str) -> None:
    """Wait (bounded) for ``condition``; the bound is a hang guard, not a speed claim."""
    deadline = time.monotonic() + WAIT_S
    while not condition():
        assert time.monotonic() < deadline, what
        time.sleep(0.02)


async def eventually_async(condition: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + WAIT_S
    while not condition():
        assert time.monotonic() < deadline, what
        await asyncio.sleep(0.02)


@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="counts descriptors in /proc")
def test_sync_calls_leave_no_connection_open(server: OpenAIServer, registry: ModelRegistry) -> None:
    tool = FusionTool(**PANEL, model_factory=registry)
    alias = FusionChatModel(**PANEL, synthesis_model="synth/model", model_factory=registry)

    def every_sync_path() -> None:
        assert '"status": "ok"' in tool.invoke({"prompt": QUESTION})
        assert alias.invoke(QUESTION).content == ANSWER
        assert "".join(str(c.content) for c in alias.stream(QUESTION)) == ANSWER
        assert [m.content for m in alias.batch([QUESTION, QUESTION])] == [ANSWER, ANSWER]

    every_sync_path()  # the first call imports and builds what every later call reuses
    threads = threading.active_count()
    gc.collect()
    before = sockets()
    for _ in range(4):
        every_sync_path()
    gc.collect()
    # Each call's loop closed its pools: the sockets (both ends) are gone again.
    eventually(lambda: sockets() <= before, f"sockets grew from {before} to {sockets()}")
    assert threading.active_count() <= threads
    # 5 rounds of: the tool (2 panel calls + judge) and 4 alias runs (+ synthesis each).
    assert len(server.requests) == 5 * (3 + 4 * 4)


async def test_per_request_settings_do_not_grow_the_model_cache(registry: ModelRegistry) -> None:
    models = [registry("p/1", role="panel", temperature=i / 200, timeout=5) for i in range(300)]
    cache = pools.loop_cache(registry, MODEL_CACHE_SIZE)
    assert cache is not None and len(cache) == MODEL_CACHE_SIZE
    # Models built for one endpoint share its pools: no client (and SSL context) each.
    assert len({id(m.http_async_client) for m in models}) == 1  # type: ignore[attr-defined]
    assert len({id(m.http_client) for m in models}) == 1  # type: ignore[attr-defined]
    assert registry("p/1", role="panel", temperature=299 / 200, timeout=5) is models[-1]


async def test_closing_a_loops_pools_closes_its_clients_and_forgets_its_models(
    registry: ModelRegistry,
) -> None:
    model = registry("p/1", role="panel")
    client = model.http_async_client  # type: ignore[attr-defined]
    assert not client.is_closed
    await pools.close_loop_pools()
    assert client.is_closed
    rebuilt = registry("p/1", role="panel")
    assert rebuilt is not model and not rebuilt.http_async_client.is_closed  # type: ignore[attr-defined]


def test_pools_of_event_loops_that_ended_are_dropped(registry: ModelRegistry) -> None:
    async def build() -> set[asyncio.AbstractEventLoop]:
        registry("p/1", role="panel")
        return set(pools._loops)

    for _ in range(5):
        asyncio.run(build())  # a caller's own loops, never closed by us
    last = asyncio.run(build())
    assert len(last) == 1  # only the loop that was running


async def test_a_cancelled_run_closes_every_model_connection(
    server: OpenAIServer, registry: ModelRegistry
) -> None:
    for name in ("hang/1", "hang/2", "hang/3"):
        server.script(name, Reply(hang=True))
    graph = build_fusion_graph(model_factory=registry)
    run = asyncio.create_task(
        graph.ainvoke(
            {"messages": [HumanMessage(QUESTION)]},
            context=context(analysis_models=["hang/1", "hang/2", "hang/3"]),
        )
    )
    await eventually_async(lambda: len(server.requests) == 3, "the panel calls never arrived")
    run.cancel()
    with pytest.raises(asyncio.CancelledError):
        await run
    await eventually_async(
        lambda: all(r.disconnected for r in server.requests),
        "a model connection stayed open after the run was cancelled",
    )
    # The run and every task it started have ended: nothing is left that could call a model.
    assert asyncio.all_tasks() == {asyncio.current_task()}
    assert len(server.requests) == 3  # no retry, no judge


async def test_a_caller_leaving_a_streamed_synthesis_closes_its_connection(
    server: OpenAIServer, registry: ModelRegistry
) -> None:
    server.script("synth/model", Reply("The answer starts here and", fault="sse_hang", cut_after=3))
    graph = build_fusion_graph(model_factory=registry)
    stream = graph.astream(
        {"messages": [HumanMessage(QUESTION)]}, context=context(), stream_mode="messages"
    )
    async for chunk, meta in stream:
        if meta["langgraph_node"] == "synthesize" and chunk.text:
            break  # the caller has seen enough and goes away
    await stream.aclose()
    (synthesis,) = server.requests_for("synth/model")
    await eventually_async(lambda: synthesis.disconnected > 0, "the synthesis stream stayed open")


async def test_a_provider_is_readied_off_the_event_loop() -> None:
    """A factory whose readying blocks (the embedded server starting) leaves the loop free."""
    readying: list[tuple[int, float, float]] = []

    class SlowToStart(FakeFactory):
        def __call__(self, slug: str, /, **settings: Any) -> BaseChatModel:
            return self.models[slug]  # building is quick: readying is the slow part

        def ensure_available(self, slug: str) -> None:
            started = time.monotonic()
            time.sleep(0.2)  # spawning a server, waiting for it, hashing its model file
            readying.append((threading.get_ident(), started, time.monotonic()))

        def may_block(self, slug: str) -> bool:
            return True

    factory = SlowToStart(
        {
            "p/1": ScriptedModel(replies=["one"]),
            "judge/model": ScriptedModel(replies=[verdict()]),
            "synth/model": ScriptedModel(replies=[ANSWER]),
        }
    )
    ticks: list[float] = []

    async def tick() -> None:
        while True:
            ticks.append(time.monotonic())
            await asyncio.sleep(0.01)

    ticker = asyncio.create_task(tick())
    graph = build_fusion_graph(model_factory=factory)
    out = await graph.ainvoke(
        {"messages": [HumanMessage(QUESTION)]}, context=context(analysis_models=["p/1"])
    )
    ticker.cancel()
    assert out["answer"] == ANSWER
    assert len(readying) == 3  # each slug once: panel, judge, synthesis
    assert threading.get_ident() not in {thread for thread, _, _ in readying}
    first, last = readying[0][1], readying[-1][2]
    # The loop kept running while the factory was busy readying the models.
    assert any(first < t < last for t in ticks)


@pytest.mark.slow  # the CLI in a process of its own, interrupted
def test_ctrl_c_in_the_cli_closes_every_model_connection(server: OpenAIServer) -> None:
    for name in ("hang/1", "hang/2"):
        server.script(name, Reply(hang=True))
    env = {
        **{k: v for k, v in os.environ.items() if not k.endswith("_API_KEY")},
        "OPENROUTER_BASE_URL": server.base_url,
        "OPENROUTER_API_KEY": SECRET,
    }
    command = [sys.executable, "-m", "langfusion.tools.cli", "ask", "--models", "hang/1,hang/2"]
    command += ["--judge", "judge/model", "--no-web", "--json", QUESTION]
    process = subprocess.Popen(
        command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        eventually(lambda: len(server.requests) == 2, "the CLI's panel calls never arrived")
        process.send_signal(signal.SIGINT)
        out, err = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 130, err
    assert "Interrupted." in err and "Traceback" not in err and SECRET not in out + err
    eventually(lambda: all(r.disconnected for r in server.requests), "a connection outlived Ctrl-C")
    assert len(server.requests) == 2
