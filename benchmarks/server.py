"""A lean, latency-injecting OpenAI-compatible server, run in its own process.

Every model name has a spec: how long it waits before answering
(``latency_s``; for a streamed reply, the time to the first token), what it
answers (``content`` or ``content_chars`` of generated prose), how many
completion tokens it reports, whether it streams token by token
(``token_delay_s`` between tokens) and whether it hangs. A request that asks
for structured output (``response_format`` or a forced tool call) gets a
valid judge verdict. Replies to non-streaming requests are serialised once,
when configured, so the server spends next to nothing per request and the
critical path of a run is the sum of the configured latencies.

The server runs in a child process of its own (``ServerProcess``) so that it never
competes with the client for the GIL. It is configured over HTTP
(``POST /_config``) and can log request arrival/finish times (on
``time.monotonic()``, which is system-wide on Linux, so comparable with the
client's clock) and request bodies.
"""

from __future__ import annotations

import asyncio
import json
import random
import subprocess
import sys
import time
import urllib.request
import zlib
from pathlib import Path
from typing import Any

VERDICT: dict[str, Any] = {
    "reasoning": "A and B agree on the basics; B adds a caveat.",
    "consensus": ["Carbon taxes reduce emissions."],
    "contradictions": [
        {
            "topic": "effect on growth",
            "stances": [
                {"model": "Response A", "stance": "negligible"},
                {"model": "Response B", "stance": "small but real"},
            ],
        }
    ],
    "partial_coverage": [{"models": ["Response A"], "point": "border adjustments"}],
    "unique_insights": [{"model": "Response B", "insight": "dividends offset regressivity"}],
    "blind_spots": ["political feasibility"],
}

_WORDS = (
    "the model weighs evidence on emissions prices growth households energy policy "
    "revenue border adjustment dividend carbon market tax cost risk welfare trade "
    "industry investment innovation uncertainty estimate range studies suggest that "
    "however although because therefore while this effect depends on design and scale"
).split()


def prose(chars: int, seed: int = 0) -> str:
    """Deterministic English-like text of exactly ``chars`` characters."""
    rng = random.Random(seed)
    out: list[str] = []
    size = 0
    while size <= chars:  # joined, the words take size - 1 characters
        word = rng.choice(_WORDS)
        out.append(word)
        size += len(word) + 1
    return " ".join(out)[:chars]


def _now() -> int:
    return int(time.time())


class _Model:
    """One model's compiled behaviour."""

    def __init__(self, name: str, spec: dict[str, Any]) -> None:
        self.name = name
        self.latency_s = float(spec.get("latency_s", 0.0))
        self.hang = bool(spec.get("hang", False))
        self.hang_s = float(spec.get("hang_s", 120.0))
        self.token_delay_s = float(spec.get("token_delay_s", 0.0))
        if "content" in spec:
            self.content = str(spec["content"])
        else:
            chars = int(spec.get("content_chars", 200))
            self.content = prose(chars, seed=zlib.crc32(name.encode()))
        self.completion_tokens = int(spec.get("completion_tokens", max(1, len(self.content) // 4)))
        self.usage = {
            "prompt_tokens": 100,
            "completion_tokens": self.completion_tokens,
            "total_tokens": 100 + self.completion_tokens,
        }
        verdict = json.dumps(VERDICT)
        self.text_body = self._body({"role": "assistant", "content": self.content})
        self.json_body = self._body({"role": "assistant", "content": verdict})
        self.tool_bodies: dict[str, bytes] = {}
        self.verdict = verdict

    def _body(self, message: dict[str, Any]) -> bytes:
        return json.dumps(
            {
                "id": "chatcmpl-bench",
                "object": "chat.completion",
                "created": _now(),
                "model": self.name,
                "choices": [{"index": 0, "message": message, "finish_reason": "stop"}],
                "usage": self.usage,
            }
        ).encode()

    def tool_body(self, function: str) -> bytes:
        body = self.tool_bodies.get(function)
        if body is None:
            call = {
                "id": "call_1",
                "type": "function",
                "function": {"name": function, "arguments": self.verdict},
            }
            body = self._body({"role": "assistant", "content": None, "tool_calls": [call]})
            self.tool_bodies[function] = body
        return body


class _State:
    def __init__(self) -> None:
        self.models: dict[str, _Model] = {}
        self.default = _Model("default", {})
        self.record = False
        self.record_bodies = False
        self.log: list[dict[str, Any]] = []
        self.requests = 0
        self.bytes_in = 0

    def model(self, name: str) -> _Model:
        return self.models.get(name) or self.default


def _app(state: _State) -> Any:
    from aiohttp import web

    json_headers = {"Content-Type": "application/json"}

    async def chat(request: web.Request) -> web.StreamResponse:
        arrived = time.monotonic()
        raw = await request.read()
        body = json.loads(raw)
        name = str(body.get("model", ""))
        model = state.model(name)
        state.requests += 1
        state.bytes_in += len(raw)
        entry: dict[str, Any] | None = None
        if state.record:
            entry = {"model": name, "arrived": arrived, "bytes": len(raw)}
            if state.record_bodies:
                entry["body"] = body
                entry["raw"] = raw.decode()
                entry["headers"] = {k.lower(): v for k, v in request.headers.items()}
            state.log.append(entry)
        if model.latency_s:
            await asyncio.sleep(model.latency_s)
        if model.hang:
            await asyncio.sleep(model.hang_s)
        choice = body.get("tool_choice")
        if isinstance(choice, dict) and choice.get("type") == "function":
            payload = model.tool_body(choice["function"]["name"])
        elif isinstance(body.get("response_format"), dict) and body["response_format"].get(
            "type"
        ) in ("json_schema", "json_object"):
            payload = model.json_body
        elif body.get("stream"):
            return await stream(request, model, entry)
        else:
            payload = model.text_body
        if entry is not None:
            entry["finished"] = time.monotonic()
        return web.Response(body=payload, headers=json_headers)

    async def stream(
        request: web.Request, model: _Model, entry: dict[str, Any] | None
    ) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)

        def chunk(delta: dict[str, Any], finish: str | None = None) -> bytes:
            data = {
                "id": "chatcmpl-bench",
                "object": "chat.completion.chunk",
                "created": _now(),
                "model": model.name,
                "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
            }
            return f"data: {json.dumps(data)}\n\n".encode()

        words = model.content.split(" ")
        await response.write(chunk({"role": "assistant", "content": ""}))
        for index, word in enumerate(words):
            if index and model.token_delay_s:
                await asyncio.sleep(model.token_delay_s)
            await response.write(chunk({"content": word if index == 0 else " " + word}))
            if index == 0 and entry is not None:
                entry["first_token"] = time.monotonic()
        await response.write(chunk({}, "stop"))
        usage = {
            "id": "chatcmpl-bench",
            "object": "chat.completion.chunk",
            "created": _now(),
            "model": model.name,
            "choices": [],
            "usage": model.usage,
        }
        await response.write(f"data: {json.dumps(usage)}\n\ndata: [DONE]\n\n".encode())
        if entry is not None:
            entry["finished"] = time.monotonic()
        return response

    async def configure(request: web.Request) -> web.Response:
        spec = await request.json()
        state.models = {name: _Model(name, s) for name, s in spec.get("models", {}).items()}
        state.default = _Model("default", spec.get("default", {}))
        state.record = bool(spec.get("record", False))
        state.record_bodies = bool(spec.get("record_bodies", False))
        state.log = []
        state.requests = state.bytes_in = 0
        return web.json_response({"ok": True})

    async def log(request: web.Request) -> web.Response:
        entries, state.log = state.log, []
        return web.json_response(entries)

    async def stats(request: web.Request) -> web.Response:
        return web.json_response({"requests": state.requests, "bytes_in": state.bytes_in})

    async def models(request: web.Request) -> web.Response:
        return web.json_response({"object": "list", "data": []})

    app = web.Application(client_max_size=64 * 1024 * 1024)
    app.router.add_post("/v1/chat/completions", chat)
    app.router.add_get("/v1/models", models)
    app.router.add_post("/_config", configure)
    app.router.add_get("/_log", log)
    app.router.add_get("/_stats", stats)
    return app


def _serve() -> None:
    from aiohttp import web

    async def main() -> None:
        # handler_cancellation: a client that gives up (a hung model's deadline)
        # ends the handler instead of leaving it asleep.
        runner = web.AppRunner(_app(_State()), access_log=None, handler_cancellation=True)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0, backlog=4096)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        sys.stdout.write(f"{port}\n")
        sys.stdout.flush()
        await asyncio.Event().wait()

    asyncio.run(main())


class ServerProcess:
    """The server in a child process of its own (no GIL shared with the client)."""

    def __init__(self) -> None:
        self._process: subprocess.Popen[str] | None = None
        self.port = 0

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    @property
    def pid(self) -> int:
        assert self._process is not None
        return self._process.pid

    def start(self) -> ServerProcess:
        self._process = subprocess.Popen(
            [sys.executable, str(Path(__file__).resolve())],
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self._process.stdout is not None
        line = self._process.stdout.readline()
        if not line.strip().isdigit():
            self.stop()
            raise RuntimeError(f"the benchmark server did not start: {line!r}")
        self.port = int(line)
        return self

    def stop(self) -> None:
        if self._process is not None and self._process.poll() is None:
            self._process.terminate()
            try:
                self._process.wait(10)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait(10)

    def __enter__(self) -> ServerProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _call(self, path: str, data: Any = None) -> Any:
        url = f"http://127.0.0.1:{self.port}{path}"
        payload = None if data is None else json.dumps(data).encode()
        request = urllib.request.Request(url, data=payload, method="POST" if data else "GET")
        request.add_header("Content-Type", "application/json")
        with urllib.request.urlopen(request, timeout=30) as response:
            return json.loads(response.read())

    def configure(
        self,
        models: dict[str, dict[str, Any]],
        *,
        default: dict[str, Any] | None = None,
        record: bool = False,
        record_bodies: bool = False,
    ) -> None:
        """Replace every model spec; clears the log and the counters."""
        self._call(
            "/_config",
            {
                "models": models,
                "default": default or {},
                "record": record,
                "record_bodies": record_bodies,
            },
        )

    def log(self) -> list[dict[str, Any]]:
        """The requests logged since the last call (needs ``record=True``)."""
        result: list[dict[str, Any]] = self._call("/_log")
        return result

    def stats(self) -> dict[str, int]:
        """Requests served and request bytes received since the last configure."""
        result: dict[str, int] = self._call("/_stats")
        return result


if __name__ == "__main__":
    _serve()
