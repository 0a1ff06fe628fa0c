"""The OpenRouter-compatible API on a real server on 127.0.0.1, over the scripted upstream.

``ApiServer`` serves ``create_app`` (the playground and the API, behind the
Host guard) with uvicorn on a thread; ``serve_process`` runs ``langfusion
serve`` itself in a subprocess. Both talk to an ``OpenAIServer`` that also
notes each request whose client hung up before it was answered.

The fixtures ``server`` (the upstream, with its key in the environment) and
``api`` (an ``ApiServer`` over it) live here. A test module that wants them
imports their functions, ``scripted_upstream`` and ``running_api``, each ``as``
itself: pytest then finds the fixtures in that module, and the linter reads the
import as meant.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from aiohttp import web

from langfusion.graph import ModelRegistry
from langfusion.tools.api import BearerTokens
from langfusion.tools.playground import bind, create_app, url_of
from tests.fakes import verdict
from tests.openai_server import OpenAIServer, Reply

# What the upstream's key is set to: it must never come back to a client or a log.
CANARY = "sk-or-v1-CANARYKEY0123456789abcdefDONOTLEAK"
TOKEN = "lf-test-token-0123456789"
PANEL = ["p/one", "p/two"]
DEFAULTS: dict[str, Any] = {
    "analysis_models": PANEL,
    "model": "judge/model",
    "synthesis_model": "synth/model",
    "web_tools": False,
    "max_retries": 0,
}


class WatchingServer(OpenAIServer):
    """The scripted upstream, also noting each request whose client left before the reply."""

    def __init__(self) -> None:
        super().__init__()
        self.dropped: list[str] = []

    async def _chat(self, request: web.Request) -> web.StreamResponse:
        model = str((await request.json()).get("model", ""))
        try:
            return await super()._chat(request)
        except asyncio.CancelledError:  # aiohttp cancels a handler whose client went away
            self.dropped.append(model)
            raise

    def closed(self, model: str) -> bool:
        """Whether a request for ``model`` saw its client close the connection."""
        held = any(r.disconnected for r in self.requests_for(model))
        return held or model in self.dropped


def upstream() -> WatchingServer:
    """The upstream every API test starts from: two panelists, a judge, a synthesis."""
    server = WatchingServer().start()
    server.script("p/one", "The first panelist says the tax works if revenue is recycled.")
    server.script("p/two", "The second panelist says the tax is regressive without dividends.")
    server.script("judge/model", verdict())
    server.script("synth/model", "The synthesis: recycle the revenue as dividends.")
    return server


def panel_calls(server: OpenAIServer) -> int:
    """How many requests the panelists got."""
    return sum(len(server.requests_for(slug)) for slug in PANEL)


class ApiServer:
    """``create_app`` with the API on, served by uvicorn on a free loopback port."""

    def __init__(
        self, server: OpenAIServer, db: Path, keepalive_s: float = 0.05, **defaults: Any
    ) -> None:
        self.registry = ModelRegistry(base_url=server.base_url)
        self.app = create_app(
            defaults={**DEFAULTS, **defaults},
            db=db,
            api_tokens=BearerTokens([TOKEN]),
            model_factory=self.registry,
            api_keepalive_s=keepalive_s,
        )
        self._sock = bind("127.0.0.1", 0)
        self.url = url_of(self._sock).rstrip("/")
        self.base_url = f"{self.url}/api/v1"
        self._server = uvicorn.Server(
            uvicorn.Config(self.app, log_level="warning", lifespan="on", access_log=False)
        )
        self._thread = threading.Thread(
            target=self._server.run, kwargs={"sockets": [self._sock]}, daemon=True
        )

    def __enter__(self) -> ApiServer:
        self._thread.start()
        deadline = time.monotonic() + 20
        while not self._server.started:
            if time.monotonic() > deadline or not self._thread.is_alive():
                raise RuntimeError("the API server did not start")
            time.sleep(0.02)
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.should_exit = True
        self._thread.join(15)

    def client(self, token: str | None = TOKEN, base: str = "/api/v1") -> httpx.Client:
        headers = {"authorization": f"Bearer {token}"} if token else {}
        return httpx.Client(base_url=self.url + base, headers=headers, trust_env=False, timeout=30)


@pytest.fixture(name="server")
def scripted_upstream(monkeypatch: pytest.MonkeyPatch) -> Iterator[WatchingServer]:
    """The ``upstream()`` server, with ``CANARY`` as the upstream key in the environment."""
    monkeypatch.setenv("OPENROUTER_API_KEY", CANARY)
    scripted = upstream()
    yield scripted
    scripted.stop()


@pytest.fixture(name="api")
def running_api(server: WatchingServer, tmp_path: Path) -> Iterator[ApiServer]:
    """An ``ApiServer`` over the ``server`` fixture, its runs in a fresh database."""
    with ApiServer(server, tmp_path / "runs.sqlite") as running:
        yield running


def ask(text: str = "Should we adopt a carbon tax?") -> list[dict[str, Any]]:
    return [{"role": "user", "content": text}]


def fusion_tool(**parameters: Any) -> dict[str, Any]:
    return (
        {"type": "openrouter:fusion", "parameters": parameters}
        if parameters
        else {"type": "openrouter:fusion"}
    )


def calls_fusion(prompt: str = "Should we adopt a carbon tax? Compare the views.") -> Reply:
    """A calling model's reply that calls the fusion tool."""
    return Reply(tool_call=("fusion", {"prompt": prompt}))


def sse_data(lines: Iterator[str]) -> Iterator[Any]:
    """The JSON payloads of an SSE stream's ``data:`` lines (``[DONE]`` as the string)."""
    for line in lines:
        if line.startswith("data: "):
            data = line.removeprefix("data: ")
            yield data if data == "[DONE]" else json.loads(data)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def serve_process(
    server: OpenAIServer, *args: str, env: dict[str, str] | None = None
) -> Iterator[tuple[str, subprocess.Popen[str], list[str]]]:
    """``langfusion serve`` in a subprocess over ``server``: (API base URL, process, its output)."""
    port = free_port()
    environment = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("OPENROUTER", "LANGFUSION"))},
        "OPENROUTER_API_KEY": CANARY,
        "OPENROUTER_BASE_URL": server.base_url,
        "LANGFUSION_API_KEYS": TOKEN,
        "PYTHONUNBUFFERED": "1",
        "XDG_STATE_HOME": str(Path(os.environ.get("TMPDIR", "/tmp")) / f"lf-api-{port}"),
        **(env or {}),
    }
    command = [
        sys.executable, "-m", "langfusion.tools.cli", "serve", "--port", str(port),
        "--models", ",".join(PANEL), "--judge", "judge/model", "--no-web", *args,
    ]  # fmt: skip
    process = subprocess.Popen(
        command, env=environment, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    output: list[str] = []
    assert process.stdout is not None
    pipe = process.stdout

    def read() -> None:
        for line in pipe:
            output.append(line)

    threading.Thread(target=read, daemon=True).start()
    base = f"http://127.0.0.1:{port}/api/v1"
    try:
        deadline = time.monotonic() + 60
        while not any("langfusion API:" in line for line in output):
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("langfusion serve did not start:\n" + "".join(output))
            time.sleep(0.05)
        _wait_listening(port, deadline)
        yield base, process, output
    finally:
        process.terminate()
        try:
            process.wait(15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)


def _wait_listening(port: int, deadline: float) -> None:
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError("langfusion serve is not listening")


def printed_token(output: list[str]) -> str | None:
    """The API token ``langfusion serve`` printed at start, if it made one."""
    for line in output:
        found = re.search(r"API token: (\S+)", line)
        if found:
            return found.group(1)
    return None
