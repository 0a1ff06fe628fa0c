"""A scripted OpenAI-compatible chat server on 127.0.0.1, for wire-path tests and benchmarks.

Each model name gets a script: a latency, then replies in order (the last one
repeats). A reply is text, a judge verdict (returned as JSON content, or as a
forced tool call when the request forces one), an HTTP error status with
headers, a hang, a fault (see ``Reply.fault``), or what a cooperative model
would answer to the request (``Reply.obey``: the tool call it forces or
offers, JSON in its response format, streamed as providers stream them).
Every request is recorded
with its headers and body, and with the moment the server saw the client
close a connection it was holding open (a hang).
"""

from __future__ import annotations

import asyncio
import json
import re
import socket
import struct
import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web


@dataclass
class Reply:
    """One scripted answer."""

    content: str = "a scripted answer"
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    hang: bool = False
    completion_tokens: int = 7
    tool_call: tuple[str, dict[str, Any]] | None = None
    # Chat-completion message extras: url_citation annotations, a refusal.
    annotations: list[dict[str, Any]] | None = None
    refusal: str | None = None
    finish_reason: str = "stop"
    # A broken reply instead of a completion: "malformed" (a 200 whose body is
    # not JSON), "error_body" (a 200 whose body is an error object quoting
    # `content`), "reset" (the connection is reset), "truncated" (the body
    # stops short of its Content-Length), "sse_cut" (a stream that stops after
    # `cut_after` words), "sse_error" (a stream whose event after `cut_after`
    # words is an error quoting `content`), "sse_hang" (a stream that stops
    # sending after `cut_after` words and holds the connection open), or "raw"
    # (`body`, as JSON, with status 200).
    fault: str | None = None
    # Answer as a cooperative model would (see ``obeyed``): call the tool that is
    # forced or offered, fill a json_schema response_format, else say `content`.
    obey: bool = False
    cut_after: int = 2
    body: Any = None
    # What the provider reports the call cost (OpenRouter's usage.cost), in its usage.
    cost: float | None = None
    # False: no token counts at all (no usage object, no usage chunk in a stream),
    # as llama.cpp's server sends on a streamed reply.
    usage: bool = True


@dataclass
class Script:
    """How one model name behaves."""

    replies: list[Reply] = field(default_factory=lambda: [Reply()])
    latency_s: float = 0.0
    calls: int = 0

    def next(self) -> Reply:
        reply = self.replies[min(self.calls, len(self.replies) - 1)]
        self.calls += 1
        return reply


@dataclass
class Recorded:
    """One request as the server saw it."""

    model: str
    headers: dict[str, str]
    body: dict[str, Any]
    started: float
    finished: float = 0.0
    disconnected: float = 0.0


class OpenAIServer:
    """The server; use as a context manager, or ``start()``/``stop()``."""

    def __init__(self, default: Script | None = None) -> None:
        self.scripts: dict[str, Script] = {}
        self.default = default or Script()
        self.requests: list[Recorded] = []
        # Extra GET routes (path -> (content type, body)): web pages, a search API.
        self.pages: dict[str, tuple[str, str]] = {}
        # GET /v1/models: its entries (OpenRouter's shape, with pricing) and how often it was read.
        self.models: list[dict[str, Any]] = []
        self.models_reads = 0
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._runner: web.AppRunner | None = None
        self._thread: threading.Thread | None = None
        self.port = 0

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def script(self, model: str, *replies: Reply | str, latency_s: float = 0.0) -> Script:
        script = Script(
            replies=[r if isinstance(r, Reply) else Reply(content=r) for r in replies] or [Reply()],
            latency_s=latency_s,
        )
        self.scripts[model] = script
        return script

    def requests_for(self, model: str) -> list[Recorded]:
        return [r for r in self.requests if r.model == model]

    async def _chat(self, request: web.Request) -> web.StreamResponse:
        body = await request.json()
        model = str(body.get("model", ""))
        record = Recorded(
            model, {k.lower(): v for k, v in request.headers.items()}, body, time.monotonic()
        )
        with self._lock:
            self.requests.append(record)
            script = self.scripts.get(model, self.default)
            reply = script.next()
        if script.latency_s:
            await asyncio.sleep(script.latency_s)
        if reply.hang:
            await self._hold(request, record)
            return web.Response(status=499)
        if reply.fault is not None and not reply.fault.startswith("sse_"):
            return await self._fault(request, reply, record)
        record.finished = time.monotonic()
        if reply.status != 200:
            return web.json_response(
                {"error": {"message": reply.content, "code": reply.status}},
                status=reply.status,
                headers=reply.headers,
            )
        usage: dict[str, Any] = {
            "prompt_tokens": 11,
            "completion_tokens": reply.completion_tokens,
            "total_tokens": 11 + reply.completion_tokens,
        }
        if reply.cost is not None:
            usage["cost"] = reply.cost
        message: dict[str, Any] = {"role": "assistant", "content": reply.content}
        choice = body.get("tool_choice")
        if isinstance(choice, dict) and choice.get("type") == "function":
            name = choice["function"]["name"]
            message = {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {
                        "id": "call_1",
                        "type": "function",
                        "function": {"name": name, "arguments": reply.content},
                    }
                ],
            }
        if reply.tool_call is not None:
            name, arguments = reply.tool_call
            message = {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {
                        "id": f"call_{len(self.requests)}",
                        "type": "function",
                        "function": {"name": name, "arguments": json.dumps(arguments)},
                    }
                ],
            }
        if reply.annotations is not None:
            message["annotations"] = reply.annotations
        if reply.refusal is not None:
            message["refusal"] = reply.refusal
        if reply.obey:
            message = obeyed(body, reply.content)
        if body.get("stream"):
            if reply.fault is not None:
                return await self._broken_stream(request, model, reply, record)
            counted = usage if reply.usage else None
            return await self._stream(request, model, message, counted, reply.finish_reason)
        completion = {
            "id": "chatcmpl-1",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": model,
            "system_fingerprint": "fp_loopback",
            "choices": [{"index": 0, "message": message, "finish_reason": reply.finish_reason}],
        }
        return web.json_response(completion | ({"usage": usage} if reply.usage else {}))

    async def _stream(
        self,
        request: web.Request,
        model: str,
        message: dict[str, Any],
        usage: dict[str, Any] | None,
        finish: str = "stop",
    ) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)

        async def send(delta: dict[str, Any], finish: str | None = None, **extra: Any) -> None:
            chunk = {
                "id": "chatcmpl-1",
                "object": "chat.completion.chunk",
                "created": int(time.time()),
                "model": model,
                "system_fingerprint": "fp_loopback",
                "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
                **extra,
            }
            await response.write(f"data: {json.dumps(chunk)}\n\n".encode())

        content = message.get("content") or ""
        words = content.split(" ")
        await send({"role": "assistant", "content": ""})
        for index, word in enumerate(words):
            await send({"content": word if index == 0 else " " + word})
        for key in ("annotations", "refusal"):
            if message.get(key):
                await send({key: message[key]})
        for index, call in enumerate(message.get("tool_calls") or []):
            # Name and the first half of the arguments, then the rest: as providers split them.
            arguments = call["function"]["arguments"]
            head = {"name": call["function"]["name"], "arguments": arguments[: len(arguments) // 2]}
            first = {"index": index, "id": call["id"], "type": "function", "function": head}
            await send({"tool_calls": [first]})
            rest = {"arguments": arguments[len(arguments) // 2 :]}
            await send({"tool_calls": [{"index": index, "function": rest}]})
        await send({}, "tool_calls" if message.get("tool_calls") else finish)
        if usage is not None:
            usage_chunk = {
                "id": "chatcmpl-1",
                "object": "chat.completion.chunk",
                "created": 0,
                "model": model,
                "choices": [],
                "usage": usage,
            }
            await response.write(f"data: {json.dumps(usage_chunk)}\n\n".encode())
        await response.write(b"data: [DONE]\n\n")
        return response

    async def _hold(self, request: web.Request, record: Recorded) -> None:
        """Keep the connection open until the client closes it, and note when it did."""
        while request.transport is not None and not request.transport.is_closing():
            await asyncio.sleep(0.01)
        record.disconnected = time.monotonic()

    async def _fault(
        self, request: web.Request, reply: Reply, record: Recorded
    ) -> web.StreamResponse:
        record.finished = time.monotonic()
        if reply.fault == "malformed":
            return web.Response(
                body=b'{"id": "chatcmpl-1", "choices": [', content_type="application/json"
            )
        if reply.fault == "error_body":
            error = {"error": {"message": reply.content, "code": 502}}
            return web.json_response(error)
        if reply.fault == "raw":
            return web.Response(
                body=json.dumps(reply.body).encode(), content_type="application/json"
            )
        transport = request.transport
        assert transport is not None
        if reply.fault == "reset":
            sock = transport.get_extra_info("socket")
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            transport.close()
            return web.Response()
        if reply.fault == "truncated":
            response = web.StreamResponse(headers={"Content-Length": "4096"})
            response.content_type = "application/json"
            await response.prepare(request)
            await response.write(b'{"id": "chatcmpl-1", "object": "chat.completion", "choices": [')
            transport.close()
            return response
        raise ValueError(f"unknown fault {reply.fault!r}")

    async def _broken_stream(
        self, request: web.Request, model: str, reply: Reply, record: Recorded
    ) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        words = reply.content.split(" ")[: reply.cut_after]
        try:
            for index, word in enumerate(words):
                delta = {"content": word if index == 0 else " " + word}
                chunk = {
                    "id": "chatcmpl-1",
                    "object": "chat.completion.chunk",
                    "created": int(time.time()),
                    "model": model,
                    "choices": [{"index": 0, "delta": delta}],
                }
                await response.write(f"data: {json.dumps(chunk)}\n\n".encode())
            if reply.fault == "sse_error":
                error = {"error": {"message": reply.content, "code": 502}}
                await response.write(f"data: {json.dumps(error)}\n\n".encode())
        except ConnectionError:  # the client closed the connection before the last word
            record.disconnected = time.monotonic()
            return response
        if reply.fault == "sse_hang":
            await self._hold(request, record)
            return response
        record.finished = time.monotonic()
        if request.transport is not None:
            request.transport.close()
        return response

    async def _page(self, request: web.Request) -> web.Response:
        page = self.pages.get(request.path)
        if page is None:
            return web.Response(status=404, text="not found")
        content_type, body = page
        return web.Response(body=body.encode(), headers={"Content-Type": content_type})

    @property
    def root_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def _models(self, request: web.Request) -> web.Response:
        with self._lock:
            self.models_reads += 1
        return web.json_response({"object": "list", "data": self.models})

    def start(self) -> OpenAIServer:
        ready = threading.Event()

        def serve() -> None:
            loop = asyncio.new_event_loop()
            self._loop = loop
            app = web.Application()
            app.router.add_post("/v1/chat/completions", self._chat)
            app.router.add_get("/v1/models", self._models)
            app.router.add_get("/{tail:.*}", self._page)
            self._runner = web.AppRunner(app, access_log=None)
            loop.run_until_complete(self._runner.setup())
            site = web.TCPSite(self._runner, "127.0.0.1", 0)
            loop.run_until_complete(site.start())
            self.port = self._runner.addresses[0][1]
            ready.set()
            loop.run_forever()
            loop.run_until_complete(self._runner.cleanup())
            loop.close()

        self._thread = threading.Thread(target=serve, daemon=True)
        self._thread.start()
        ready.wait(10)
        return self

    def stop(self) -> None:
        loop = self._loop
        if loop is not None:

            def halt() -> None:
                for task in asyncio.all_tasks(loop):
                    task.cancel()  # hanging handlers included
                loop.stop()

            loop.call_soon_threadsafe(halt)
        if self._thread is not None:
            self._thread.join(10)

    def __enter__(self) -> OpenAIServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def obeyed(body: dict[str, Any], content: str) -> dict[str, Any]:
    """The reply a cooperative model gives to ``body``: a tool call, schema-shaped JSON, or text.

    It calls a tool when one is forced, or offered before any tool result came
    back; it fills a ``json_schema`` response format; otherwise it says
    ``content``. Values come from the question: strings take its first quoted
    phrase, numbers its first number.
    """
    tools = body.get("tools") or []
    choice = body.get("tool_choice")
    text = _question_text(body)
    response_format = body.get("response_format") or {}
    if response_format.get("type") == "json_schema":
        schema = response_format["json_schema"].get("schema") or {}
        value = _example(schema, schema, text)
        return {"role": "assistant", "content": json.dumps(value, ensure_ascii=False)}
    last = (body.get("messages") or [{}])[-1]
    named = choice["function"]["name"] if isinstance(choice, dict) else None
    offered = choice in (None, "auto") and last.get("role") == "user"
    if tools and (named is not None or choice == "required" or offered):
        tool = next((t for t in tools if t["function"]["name"] == named), tools[0])
        schema = tool["function"].get("parameters") or {}
        arguments = json.dumps(_example(schema, schema, text), ensure_ascii=False)
        call = {"name": tool["function"]["name"], "arguments": arguments}
        return {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {"id": f"call_{uuid.uuid4().hex[:12]}", "type": "function", "function": call}
            ],
        }
    return {"role": "assistant", "content": content}


def _question_text(body: dict[str, Any]) -> str:
    """The last user message's text, or its ``<question>`` section where it has one."""
    users = [m for m in body.get("messages") or [] if m.get("role") == "user"]
    content = users[-1].get("content") or "" if users else ""
    if isinstance(content, list):
        content = " ".join(p.get("text", "") for p in content if isinstance(p, dict))
    found = re.search(r"<question>\s*(.*?)\s*</question>", content, re.S)
    return found.group(1) if found else str(content)


def _example(schema: dict[str, Any], root: dict[str, Any], text: str) -> Any:
    """A value that fits ``schema`` (``$ref`` resolved in ``root``), drawn from ``text``."""
    if "$ref" in schema:
        name = schema["$ref"].rsplit("/", 1)[-1]
        definitions = root.get("$defs") or root.get("definitions") or {}
        return _example(definitions[name], root, text)
    for key in ("anyOf", "oneOf", "allOf"):
        if key in schema:
            options = [o for o in schema[key] if o.get("type") != "null"] or schema[key]
            return _example(options[0], root, text)
    if "enum" in schema:
        return schema["enum"][0]
    kind = schema.get("type", "object" if "properties" in schema else "string")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), "null")
    if kind == "object":
        return {k: _example(v, root, text) for k, v in (schema.get("properties") or {}).items()}
    if kind == "array":
        return [_example(schema.get("items") or {}, root, text)]
    if kind in ("integer", "number"):
        number = re.search(r"-?\d+", text)
        return int(number.group(0)) if number else 3
    if kind == "boolean":
        return True
    if kind == "null":
        return None
    quoted = re.search(r"'([^']+)'", text)
    return quoted.group(1) if quoted else "a scripted value"
