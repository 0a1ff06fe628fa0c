"""The playground on a real server on 127.0.0.1, against the scripted OpenAI-compatible server."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import uvicorn
from aiohttp import web

from langfusion.graph import ModelRegistry, build_fusion_graph
from langfusion.tools.playground import bind, create_app, url_of
from tests.fakes import verdict
from tests.openai_server import OpenAIServer

SECRET = "sk-or-v1-PLAYGROUNDSECRET0123456789abcdef"
PANEL = ["p/slow", "p/fast", "p/mid"]
DEFAULTS: dict[str, Any] = {
    "analysis_models": PANEL,
    "model": "judge/model",
    "synthesis_model": "synth/model",
    "web_tools": False,
}


class WatchingServer(OpenAIServer):
    """The scripted server, also noting each request whose client hung up before the reply."""

    def __init__(self) -> None:
        super().__init__()
        self._dropped: list[str] = []

    @property
    def dropped(self) -> list[str]:
        """The models whose requests the client abandoned before they were answered."""
        noted = [r.model for r in self.requests if getattr(r, "disconnected", 0)]
        return [*self._dropped, *noted]

    async def _chat(self, request: web.Request) -> web.StreamResponse:
        model = str((await request.json()).get("model", ""))  # aiohttp keeps the body
        answered = asyncio.Event()
        watcher = asyncio.create_task(self._watch(request, model, answered))
        try:
            response = await super()._chat(request)
        except asyncio.CancelledError:
            # aiohttp cancels a handler once it sees that its client went away.
            if not watcher.done():
                self._dropped.append(model)
            raise
        finally:
            answered.set()
            watcher.cancel()
        return response

    async def _watch(self, request: web.Request, model: str, answered: asyncio.Event) -> None:
        transport = request.transport
        held = transport.get_extra_info("socket") if transport is not None else None
        if held is None:
            return
        # While a handler runs aiohttp may read nothing more, and so not notice the
        # client's FIN itself: peek at a duplicate of the socket as well.
        with socket.socket(fileno=os.dup(held.fileno())) as sock:
            while not answered.is_set():
                await asyncio.sleep(0.02)
                try:
                    if sock.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT) == b"":
                        break
                except BlockingIOError:
                    continue
                except OSError:
                    break
            else:
                return
        self._dropped.append(model)


def scripted_server() -> WatchingServer:
    server = WatchingServer().start()
    server.script("p/slow", "The slow panelist's answer.", latency_s=2.4)
    server.script("p/mid", "The middle panelist's answer.", latency_s=1.0)
    server.script("p/fast", "The fast panelist's answer.", latency_s=0.2)
    server.script("judge/model", verdict())
    server.script("synth/model", "## Short answer\n\nIt **depends** on the revenue.")
    return server


class Playground:
    """``create_app`` served by uvicorn on a thread, on a free loopback port."""

    def __init__(self, server: OpenAIServer, db: Path, **defaults: Any) -> None:
        registry = ModelRegistry(base_url=server.base_url)
        self.db = db
        self.app = create_app(
            build_graph=lambda: build_fusion_graph(model_factory=registry, web_tools=[]),
            defaults={**DEFAULTS, **defaults},
            db=db,
        )
        self._sock = bind("127.0.0.1", 0)
        self.url = url_of(self._sock).rstrip("/")
        self.port = self._sock.getsockname()[1]
        self._server = uvicorn.Server(
            uvicorn.Config(self.app, log_level="warning", lifespan="on", access_log=False)
        )
        self._thread = threading.Thread(
            target=self._server.run, kwargs={"sockets": [self._sock]}, daemon=True
        )

    def __enter__(self) -> Playground:
        self._thread.start()
        deadline = time.monotonic() + 20
        while not self._server.started:
            if time.monotonic() > deadline or not self._thread.is_alive():
                raise RuntimeError("the playground did not start")
            time.sleep(0.02)
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.should_exit = True
        self._thread.join(15)

    def client(self) -> httpx.Client:
        return httpx.Client(base_url=self.url, trust_env=False, timeout=30)


def events(client: httpx.Client, run_id: str) -> Iterator[dict[str, Any]]:
    """A run's server-sent events, as the page reads them."""
    with client.stream("GET", f"/api/runs/{run_id}/events") as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        for line in response.iter_lines():
            if line.startswith("data: "):
                yield json.loads(line.removeprefix("data: "))


def wait_for(condition: Any, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.02)
