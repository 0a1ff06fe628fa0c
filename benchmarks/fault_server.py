"""An OpenAI-compatible server on 127.0.0.1 that injects faults, run in its own process.

The model name says how a request is answered: ``soak/<kind>`` (anything after
a ``#`` is ignored, so one kind can stand for several panelists). ``FAULTS``
lists the kinds. A kind ending in ``-once`` fails the first attempt of each
question and answers the next one, so a retry is what saves it; the others
fail every attempt. Error bodies, 200 error bodies and stream error events
quote the API key the request was sent with (``Authorization``), the way
careless providers do, so a client that lets them through leaks it.

``GET /_calls`` lists, per model and fusion (the ``[fusion N]`` tag of the
question), how many attempts arrived and whether the client cut the last one
while it was in flight: the ground truth of a ``timeout``.

Run by ``benchmarks/soak.py``; ``python benchmarks/fault_server.py`` prints
its port and serves until killed.
"""

from __future__ import annotations

import asyncio
import json
import re
import socket
import struct
import sys
import time
from collections import Counter
from typing import Any

VERDICT = {
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
PANEL_ANSWER = "Carbon taxes cut emissions at low cost; the growth effect is small."
SYNTHESIS_ANSWER = (
    "Economists broadly agree that a carbon tax cuts emissions cheaply; they disagree "
    "mostly on how large its effect on growth is, and on how to return the revenue."
)

# kind -> (what the client should report for it, what the server does)
FAULTS: dict[str, str] = {
    "ok": "answers",
    "429-once": "429 on the first attempt, then answers",
    "429": "429 without Retry-After on every attempt",
    "429-retry-after": "429 with Retry-After: 0.3 on every attempt",
    "429-beyond-deadline": "429 with Retry-After: 600 (beyond the deadline)",
    "429-slow": "429 after 9.5 s on every attempt (the deadline may fall in a back-off wait)",
    "500": "500 on every attempt",
    "502": "502 on every attempt",
    "503": "503 on every attempt",
    "401": "401 quoting the key",
    "402": "402",
    "403": "403",
    "404": "404",
    "reset": "the connection is reset",
    "hang": "no answer until the client gives up",
    "truncated": "a body cut short of its Content-Length",
    "malformed": "a 200 whose body is not JSON",
    "error-body": "a 200 whose body is an error object quoting the key",
    "empty": "an empty completion",
    "judge-ok": "a valid verdict",
    "judge-prose": "a verdict that is prose, not JSON",
    "judge-schema": "JSON that is not the verdict's schema",
    "judge-500": "500 on every attempt",
    "synth-ok": "a streamed answer",
    "synth-cut-once": "a stream that stops halfway once, then a whole answer",
    "synth-cut": "a stream that stops halfway, every attempt",
    "synth-error-event": "a stream whose error event quotes the key, every attempt",
    "synth-empty": "an empty streamed answer",
}
_STATUS = {"429": 429, "500": 500, "502": 502, "503": 503, "401": 401, "402": 402}
_STATUS |= {"403": 403, "404": 404, "judge-500": 500}


_FUSION = re.compile(r"\[fusion (-?\d+)\]")


def _kind(model: str) -> str:
    return model.removeprefix("soak/").split("#", 1)[0]


def _key(request: Any) -> str:
    return str(request.headers.get("authorization", "")).removeprefix("Bearer ").strip()


def _completion(model: str, message: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": "chatcmpl-soak",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [{"index": 0, "message": message, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 50, "completion_tokens": 20, "total_tokens": 70},
    }


def _chunk(model: str, delta: dict[str, Any], finish: str | None = None) -> bytes:
    data = {
        "id": "chatcmpl-soak",
        "object": "chat.completion.chunk",
        "created": int(time.time()),
        "model": model,
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
    }
    return f"data: {json.dumps(data)}\n\n".encode()


def _app() -> Any:
    from aiohttp import web

    attempts: Counter[tuple[str, str]] = Counter()
    # (model, fusion index) -> attempts, how many the client cut, whether the last was cut
    calls: dict[tuple[str, int], dict[str, Any]] = {}
    served: Counter[str] = Counter()

    def error(status: int, message: str, **headers: str) -> web.Response:
        body = {"error": {"message": message, "code": status}}
        return web.json_response(body, status=status, headers=headers)

    async def chat(request: web.Request) -> web.StreamResponse:
        body = await request.json()
        model = str(body.get("model", ""))
        found = _FUSION.search(json.dumps(body.get("messages", [])))
        call = (model, int(found.group(1)) if found else 0)
        seen = calls.setdefault(call, {"attempts": 0, "cut": 0, "last_cut": False})
        seen["attempts"] += 1
        try:
            response = await answer(request, body, model)
        except asyncio.CancelledError:
            # The client closed the connection while this attempt was in flight.
            seen["cut"] += 1
            seen["last_cut"] = True
            raise
        seen["last_cut"] = False
        return response

    async def answer(request: web.Request, body: dict[str, Any], model: str) -> web.StreamResponse:
        kind = _kind(model)
        served[kind] += 1
        question = json.dumps(body.get("messages", [])[-1:])
        attempts[(model, question)] += 1
        first = attempts[(model, question)] == 1
        key = _key(request)
        if kind in ("429", "429-once") and (kind == "429" or first):
            return error(429, "Rate limit exceeded: slow down")
        if kind == "429-retry-after":
            return error(429, "Rate limit exceeded", **{"Retry-After": "0.3"})
        if kind == "429-beyond-deadline":
            return error(429, "Daily limit reached", **{"Retry-After": "600"})
        if kind == "429-slow":
            await asyncio.sleep(9.5)
            return error(429, "Rate limit exceeded after a while")
        if kind == "401":
            return error(401, f"Incorrect API key provided: {key}. Authorization: Bearer {key}")
        if kind in ("500", "judge-500"):
            return error(500, f"Internal error while serving key {key}")
        if kind in _STATUS:
            return error(_STATUS[kind], f"upstream says {kind}")
        if kind == "hang":
            while request.transport is not None and not request.transport.is_closing():
                await asyncio.sleep(0.05)
            return web.Response(status=499)
        if kind == "reset":
            transport = request.transport
            assert transport is not None
            sock = transport.get_extra_info("socket")
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            transport.close()
            return web.Response()
        if kind == "truncated":
            response = web.StreamResponse(headers={"Content-Length": "4096"})
            response.content_type = "application/json"
            await response.prepare(request)
            await response.write(b'{"id": "chatcmpl-soak", "choices": [')
            if request.transport is not None:
                request.transport.close()
            return response
        if kind == "malformed":
            return web.Response(
                body=b'{"id": "chatcmpl-soak", "ch', content_type="application/json"
            )
        if kind == "error-body":
            message = f"Provider error for key {key}: please retry"
            return web.json_response({"error": {"message": message, "code": 502}})
        if kind.startswith("synth-") and body.get("stream"):
            return await stream(request, model, kind, first, key)
        content = {
            "empty": "",
            "judge-prose": "The responses mostly agree, with one caveat about growth.",
            "judge-schema": json.dumps({"consensus": "one string, not a list"}),
            "synth-empty": "",
        }.get(kind)
        if content is None:
            content = (
                json.dumps(VERDICT)
                if kind.startswith("judge")
                else SYNTHESIS_ANSWER
                if kind.startswith("synth")
                else PANEL_ANSWER
            )
        choice = body.get("tool_choice")
        if isinstance(choice, dict) and choice.get("type") == "function":
            call = {
                "id": "call_1",
                "type": "function",
                "function": {"name": choice["function"]["name"], "arguments": content},
            }
            message: dict[str, Any] = {"role": "assistant", "content": None, "tool_calls": [call]}
        else:
            message = {"role": "assistant", "content": content}
        return web.json_response(_completion(model, message))

    async def stream(
        request: web.Request, model: str, kind: str, first: bool, key: str
    ) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        text = "" if kind == "synth-empty" else SYNTHESIS_ANSWER
        words = text.split(" ") if text else []
        broken = kind in ("synth-cut", "synth-error-event") or (kind == "synth-cut-once" and first)
        await response.write(_chunk(model, {"role": "assistant", "content": ""}))
        for index, word in enumerate(words[: len(words) // 2] if broken else words):
            await response.write(_chunk(model, {"content": word if index == 0 else " " + word}))
        if broken:
            if kind == "synth-error-event":
                error = {"error": {"message": f"stream broke for key {key}", "code": 502}}
                await response.write(f"data: {json.dumps(error)}\n\n".encode())
            if request.transport is not None:
                request.transport.close()
            return response
        await response.write(_chunk(model, {}, "stop"))
        usage = {"prompt_tokens": 50, "completion_tokens": 20, "total_tokens": 70}
        tail = {"id": "chatcmpl-soak", "object": "chat.completion.chunk", "created": 0}
        tail |= {"model": model, "choices": [], "usage": usage}
        await response.write(f"data: {json.dumps(tail)}\n\ndata: [DONE]\n\n".encode())
        return response

    async def stats(request: web.Request) -> web.Response:
        return web.json_response(dict(served))

    async def attempts_seen(request: web.Request) -> web.Response:
        return web.json_response([[m, n, seen] for (m, n), seen in calls.items()])

    app = web.Application()
    app.router.add_post("/v1/chat/completions", chat)
    app.router.add_get("/_stats", stats)
    app.router.add_get("/_calls", attempts_seen)
    return app


def main() -> None:
    from aiohttp import web

    async def serve() -> None:
        # handler_cancellation: a client that gives up ends the handler (a hang) at once.
        runner = web.AppRunner(_app(), access_log=None, handler_cancellation=True)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0, backlog=4096)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        sys.stdout.write(f"{port}\n")
        sys.stdout.flush()
        await asyncio.Event().wait()

    asyncio.run(serve())


if __name__ == "__main__":
    main()
