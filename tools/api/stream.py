"""Serving a run over HTTP: keep-alives while it works, and a client that leaves cancels it.

A run is a task of its own that feeds a queue. A streamed response reads the
queue and sends a keep-alive comment whenever nothing came for a while; a
whole response waits for the run while watching for the client's
disconnect. Either way a client that leaves cancels the run, and with it
every model call under it: their connections close.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, TypeVar

from starlette.requests import Request
from starlette.responses import StreamingResponse
from starlette.types import Receive, Scope, Send

from langfusion.tools.api.errors import ApiError

__all__ = ["KEEPALIVE", "sse_response", "ticking", "until_disconnect"]

T = TypeVar("T")
KEEPALIVE = object()
_END = object()


async def ticking(events: AsyncIterator[T], every_s: float) -> AsyncIterator[T | object]:
    """``events``, with ``KEEPALIVE`` whenever none came for ``every_s`` seconds.

    The events are produced by a task of their own; closing this generator
    (a client that left) cancels that task.
    """
    queue: asyncio.Queue[Any] = asyncio.Queue()

    async def produce() -> None:
        try:
            async for event in events:
                queue.put_nowait(event)
        except BaseException as exc:  # noqa: BLE001 - handed to the consuming side
            queue.put_nowait(exc)
            if isinstance(exc, asyncio.CancelledError):
                raise
        finally:
            queue.put_nowait(_END)

    producer = asyncio.get_running_loop().create_task(produce())
    try:
        while True:
            try:
                item = await asyncio.wait_for(queue.get(), every_s)
            except TimeoutError:
                yield KEEPALIVE
                continue
            if item is _END:
                return
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        if not producer.done():
            producer.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await producer


async def until_disconnect(request: Request, work: Callable[[], Awaitable[T]]) -> T:
    """Run ``work`` while watching the client; a client that leaves cancels it.

    The request body must have been read already: what comes next on the
    connection is the client's disconnect.

    Raises:
        ApiError: The client left (499, which nobody reads).
    """
    task = asyncio.ensure_future(work())
    watcher = asyncio.ensure_future(_disconnected(request))
    try:
        await asyncio.wait({task, watcher}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        if not task.done() and not watcher.done():
            # This request itself was cancelled (the server shutting down).
            task.cancel()
        watcher.cancel()
    if not task.done():
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await task
        raise ApiError(499, "the client closed the connection")
    return task.result()


async def _disconnected(request: Request) -> None:
    while True:
        message = await request.receive()
        if message["type"] == "http.disconnect":
            return


class _WatchedStream(StreamingResponse):
    """A streamed response that stops its stream as soon as the client disconnects.

    Under ASGI 2.4 Starlette learns of a disconnect only from a failed write,
    and uvicorn drops writes to a closed connection without failing them: a
    stream would run to its end for nobody. This one reads the connection too.
    """

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        streaming = asyncio.ensure_future(self.stream_response(send))
        watching = asyncio.ensure_future(self.listen_for_disconnect(receive))
        try:
            await asyncio.wait({streaming, watching}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (streaming, watching):
                task.cancel()
            await asyncio.gather(streaming, watching, return_exceptions=True)
        if not streaming.cancelled() and streaming.exception() is not None:
            raise streaming.exception()  # type: ignore[misc]


def sse_response(frames: AsyncIterator[str]) -> StreamingResponse:
    """A ``text/event-stream`` response of ready-made SSE frames; a client that leaves stops it."""
    return _WatchedStream(
        frames,
        media_type="text/event-stream",
        headers={"cache-control": "no-store", "x-accel-buffering": "no"},
    )


def data_frame(payload: object, event: str | None = None) -> str:
    """One SSE frame carrying ``payload`` as JSON (with its ``event:`` name, if any)."""
    head = f"event: {event}\n" if event else ""
    return f"{head}data: {json.dumps(payload, ensure_ascii=False)}\n\n"
