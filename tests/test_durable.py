"""Durable runs: a fusion whose process dies mid-panel resumes without re-asking finished models."""

from __future__ import annotations

import asyncio
import glob
import json
import os
import pwd
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import psycopg
import pytest
from langchain_core.messages import HumanMessage
from langgraph.cache.memory import InMemoryCache
from langgraph.checkpoint.base import BaseCheckpointSaver

from langfusion.graph import FusionContext, ModelRegistry, build_fusion_graph
from tests.fakes import result_of, verdict
from tests.openai_server import OpenAIServer, Reply

CHILD = Path(__file__).with_name("durable_child.py")
QUESTION = "Is a 30-year fixed mortgage better than an ARM at 7% rates?"
FAST_ANSWER = "Fixed: the rate risk is not worth the small discount."
SLOW_ANSWER = "An ARM, if you will move within seven years."
ANSWER = "Fixed, unless you are sure to move soon."
API_KEY = "sk-or-test-durable-0123456789"
DEADLINE_S = 30.0
CITATION = {
    "type": "url_citation",
    "url_citation": {"url": "https://example.org/rates", "title": "Rates", "start_index": 0},
}


def _postgres_bin() -> Path | None:
    found = sorted(
        glob.glob("/usr/lib/postgresql/*/bin/initdb"),
        key=lambda p: int(Path(p).parts[-3]) if Path(p).parts[-3].isdigit() else 0,
    )
    if found:
        return Path(found[-1]).parent
    on_path = shutil.which("initdb")
    return Path(on_path).parent if on_path else None


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """A throwaway PostgreSQL cluster on a free loopback port, removed afterwards."""
    bindir = _postgres_bin()
    if bindir is None:
        pytest.skip(
            "no PostgreSQL server binaries (initdb, pg_ctl) under /usr/lib/postgresql/*/bin "
            "or on PATH: install the Debian package 'postgresql'"
        )
    root = tempfile.mkdtemp(prefix="langfusion-pg-")
    data, log = os.path.join(root, "data"), os.path.join(root, "server.log")
    as_user: list[str] = []
    if os.geteuid() == 0:  # PostgreSQL refuses to run as root
        owner = pwd.getpwnam("postgres")
        os.chown(root, owner.pw_uid, owner.pw_gid)
        runuser = shutil.which("runuser", path="/usr/sbin:/sbin:/usr/bin:/bin") or "runuser"
        as_user = [runuser, "-u", "postgres", "--"]

    def pg(program: str, *args: str) -> None:
        done = subprocess.run(
            [*as_user, str(bindir / program), *args],
            env={"PATH": f"{bindir}:/usr/bin:/bin", "LC_ALL": "C", "LANG": "C"},
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        if done.returncode != 0:
            server_log = Path(log).read_text() if os.path.exists(log) else ""
            raise RuntimeError(f"{program} failed: {done.stderr}{server_log}")

    port = _free_port()
    options = (
        f"-p {port} -c listen_addresses=127.0.0.1 -c unix_socket_directories={root} "
        "-c fsync=off -c synchronous_commit=off -c full_page_writes=off"
    )
    started = False
    try:
        pg("initdb", "-D", data, "-A", "trust", "-U", "postgres", "-E", "UTF8", "--no-sync")
        pg("pg_ctl", "-D", data, "-o", options, "-l", log, "-w", "-t", "30", "start")
        started = True
        yield f"postgresql://postgres@127.0.0.1:{port}/postgres"
    finally:
        if started:
            pg("pg_ctl", "-D", data, "-m", "fast", "-w", "-t", "30", "stop")
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def server() -> Iterator[OpenAIServer]:
    with OpenAIServer() as running:
        running.script("p/fast", FAST_ANSWER)
        # The first call hangs (the process dies waiting for it); the resumed call answers.
        running.script("p/slow", Reply(hang=True), SLOW_ANSWER)
        running.script("judge/model", verdict())
        running.script("synth/model", ANSWER)
        yield running


@pytest.fixture(params=["sqlite", "postgres"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:{tmp_path / 'checkpoints.sqlite'}"
    url: str = request.getfixturevalue("postgres_url")
    return url


@asynccontextmanager
async def open_saver(store: str) -> AsyncIterator[BaseCheckpointSaver[Any]]:
    """The store, read with the saver's own serializer."""
    if store.startswith("sqlite:"):
        from langgraph.checkpoint.sqlite.aio import AsyncSqliteSaver

        async with AsyncSqliteSaver.from_conn_string(store.removeprefix("sqlite:")) as saver:
            yield saver
    else:
        from langgraph.checkpoint.postgres.aio import AsyncPostgresSaver

        async with AsyncPostgresSaver.from_conn_string(store) as saver:
            yield saver


def child_env(server: OpenAIServer, *, strict: bool) -> dict[str, str]:
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": os.environ.get("HOME", "/tmp"),
        "OPENROUTER_API_KEY": API_KEY,
        "OPENROUTER_BASE_URL": server.base_url,
        "LANGSMITH_TRACING": "false",
    }
    if strict:  # checkpoints may hold only types the graph declares (LangGraph's future default)
        env["LANGGRAPH_STRICT_MSGPACK"] = "true"
    return env


def child(
    server: OpenAIServer, store: str, thread_id: str, *args: str, strict: bool = False
) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, str(CHILD), store, thread_id, *args],
        env=child_env(server, strict=strict),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


async def checkpointed_panel_answers(store: str, thread_id: str) -> list[str]:
    """Slugs whose panel answers the checkpointer holds for the thread's current step."""
    try:
        async with open_saver(store) as saver:
            saved = await saver.aget_tuple({"configurable": {"thread_id": thread_id}})
    except (sqlite3.Error, psycopg.Error):  # the child may still be creating its tables
        return []
    if saved is None:
        return []
    return [
        response["model"]
        for _, channel, value in saved.pending_writes or []
        if channel == "responses"
        for response in value or []  # None: a new run clearing the thread's last answers
    ]


@pytest.mark.slow  # a throwaway PostgreSQL cluster and SIGKILLed child processes
@pytest.mark.parametrize("strict", [False, True], ids=["default-serde", "strict-msgpack"])
async def test_a_killed_run_resumes_without_calling_finished_models_again(
    server: OpenAIServer, store: str, strict: bool
) -> None:
    thread_id = f"durable-{time.monotonic_ns()}"
    first = child(server, store, thread_id, QUESTION, strict=strict)
    try:
        deadline = time.monotonic() + DEADLINE_S
        while await checkpointed_panel_answers(store, thread_id) != ["p/fast"]:
            assert first.poll() is None, first.communicate()[1]
            assert time.monotonic() < deadline, "the fast answer was never checkpointed"
            await asyncio.sleep(0.1)
        assert len(server.requests_for("p/slow")) == 1  # still waiting for the slow model
        first.send_signal(signal.SIGKILL)
    finally:
        first.kill()
        first.communicate(timeout=10)
    assert first.returncode == -signal.SIGKILL

    second = child(server, store, thread_id, "--resume", strict=strict)
    stdout, stderr = second.communicate(timeout=DEADLINE_S)
    assert second.returncode == 0, stderr
    # Nothing the run wrote was refused on reading; in strict mode, the allowlist LangGraph
    # builds from the graph's schemas names every langfusion model, so none is even unknown.
    assert "Blocked deserialization" not in stderr
    if strict:
        assert "unregistered type" not in stderr
    out = json.loads(stdout.strip().splitlines()[-1])

    assert out["answer"] == ANSWER
    assert out["result"]["status"] == "ok" and out["result"]["failed_models"] == []
    assert [(r["model"], r["content"]) for r in out["result"]["responses"]] == [
        ("p/fast", FAST_ANSWER),
        ("p/slow", SLOW_ANSWER),
    ]
    assert len(server.requests_for("p/fast")) == 1  # answered before the crash, never again
    assert len(server.requests_for("p/slow")) == 2  # the lost call, then the resumed one
    assert len(server.requests_for("judge/model")) == len(server.requests_for("synth/model")) == 1
    judge_prompt = json.dumps(server.requests_for("judge/model")[0].body["messages"])
    assert FAST_ANSWER in judge_prompt and SLOW_ANSWER in judge_prompt


@pytest.mark.parametrize("cached", [False, True], ids=["default", "with-cache"])
async def test_the_panel_cache_is_off_unless_asked_for(
    server: OpenAIServer, monkeypatch: pytest.MonkeyPatch, cached: bool
) -> None:
    monkeypatch.setenv("OPENROUTER_API_KEY", API_KEY)
    kwargs: dict[str, Any] = {"cache": InMemoryCache()} if cached else {}
    graph = build_fusion_graph(
        model_factory=ModelRegistry(base_url=server.base_url), web_tools=[], **kwargs
    )
    context = FusionContext(
        analysis_models=["p/fast"], model="judge/model", synthesis_model="synth/model"
    )
    for _ in range(2):
        out = await graph.ainvoke({"messages": [HumanMessage(QUESTION)]}, context=context)
        assert result_of(out).responses[0].content == FAST_ANSWER
    # Deliberation wants fresh answers by default; a cache reuses the identical panel call.
    assert len(server.requests_for("p/fast")) == (1 if cached else 2)
    assert len(server.requests_for("judge/model")) == 2


async def test_a_resumed_run_gets_a_fresh_deadline(
    server: OpenAIServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The deadline of a panel call is the call's own, not a leftover of the cancelled run."""
    from langgraph.checkpoint.memory import InMemorySaver

    monkeypatch.setenv("OPENROUTER_API_KEY", API_KEY)
    server.script("p/fast", FAST_ANSWER)
    server.script("p/slow", Reply(hang=True), SLOW_ANSWER)
    server.script("judge/model", verdict())
    server.script("synth/model", ANSWER)
    graph = build_fusion_graph(
        model_factory=ModelRegistry(base_url=server.base_url),
        web_tools=[],
        checkpointer=InMemorySaver(),
    )
    timeout_s = 1.5
    context = FusionContext(
        analysis_models=["p/fast", "p/slow"],
        model="judge/model",
        synthesis_model="synth/model",
        timeout_s=timeout_s,
    )
    config: Any = {"configurable": {"thread_id": "fresh-deadline"}}
    first = asyncio.create_task(
        graph.ainvoke({"messages": [HumanMessage(QUESTION)]}, config, context=context)
    )
    while not (server.requests_for("p/slow") and server.requests_for("p/fast")):
        await asyncio.sleep(0.02)
    first.cancel()
    with pytest.raises(asyncio.CancelledError):
        await first
    # Longer than the first call's deadline: a deadline kept from it would have passed.
    await asyncio.sleep(timeout_s + 0.5)

    out = await graph.ainvoke(None, config, context=context)
    assert result_of(out).failed_models == []
    assert [r.model for r in result_of(out).responses] == ["p/fast", "p/slow"]
    assert len(server.requests_for("p/slow")) == 2  # the cancelled call, then the resumed one


# How a saver reaches the graph: compiled in, on a copy (what the LangGraph server does), or set.
SAVER_ROUTES = ["compiled", "copy", "assigned"]


@pytest.mark.slow  # a fresh Python process for each route
@pytest.mark.parametrize("route", SAVER_ROUTES)
async def test_a_checkpoint_reads_back_every_result_model_in_strict_mode(route: str) -> None:
    """LangGraph's strict msgpack mode reads back what a fusion checkpointed, in a fresh process.

    The run keeps an answer, a failed model, an analysis with every kind of
    entry, citations and usage, so every langfusion model is in the checkpoint.
    """
    with OpenAIServer() as server:
        server.script("p/fast", Reply(FAST_ANSWER, annotations=[CITATION]))
        server.script("p/gone", Reply(status=404))
        server.script("judge/model", verdict())
        server.script("synth/model", ANSWER)
        done = subprocess.run(
            [sys.executable, str(CHILD), f"memory:{route}", "strict", "--check-state"],
            env=child_env(server, strict=True),
            capture_output=True,
            text=True,
            timeout=DEADLINE_S,
            check=False,
        )
    assert done.returncode == 0, done.stderr
    assert "Blocked deserialization" not in done.stderr
    assert "unregistered type" not in done.stderr
    out = json.loads(done.stdout.strip().splitlines()[-1])
    assert out["state_matches"] is True
    result = out["result"]
    assert [r["model"] for r in result["responses"]] == ["p/fast"]
    assert [f["failure_reason"] for f in result["failed_models"]] == ["model_not_found"]
    assert result["analysis"]["consensus"] and result["citations"]
