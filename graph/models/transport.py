"""The HTTP path of every model call: redaction and one deadline per call.

(The pooled clients that carry these transports are in ``graph/pools.py``.)

* A transport that scrubs credentials from everything an endpoint sends back
  (headers, bodies of every status, each event of a stream) before the
  ``openai`` client turns any of it into an exception, a log line or a
  trace; turns a 200 that carries an error object or no readable completion
  into a 502, so the client retries it and it fails as an upstream error;
  and records, per call, the last failed attempt.
* :func:`call_deadline`: the one deadline of a model call, its retries and
  their waits included. When it ends during a wait between attempts, the
  call fails with what the last attempt got (a 429 stays ``rate_limited``);
  only an attempt cut while in flight is a ``timeout``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any

from langfusion.graph.errors import (
    ORIGINAL_STATUS_HEADER,
    PanelDeadlineError,
    UpstreamFailure,
    api_message,
    classify,
    reason_for_status,
    redact,
    retry_after_s,
    scrub,
    secret_values,
    short,
)
from langfusion.graph.models.http import httpx

__all__ = ["ORIGINAL_STATUS_HEADER", "CallRecord", "RedactingTransport", "call_deadline"]

_RETRYABLE = frozenset({408, 409, 429})
_DROPPED_HEADERS = ("content-encoding", "content-length", "transfer-encoding")
_CREDENTIAL_HEADERS = ("authorization", "api-key", "x-api-key")


@dataclass
class CallRecord:
    """What the transport saw of one model call: all its attempts and requests.

    ``cost`` is the sum of what the provider reported each completed request
    cost (OpenRouter's ``usage.cost``, in credits), ``None`` when none did.
    """

    deadline: float
    in_flight: int = 0
    cut: bool = False
    last: UpstreamFailure | None = None
    cost: float | None = None
    streams: list[_RedactedEvents] = field(default_factory=list)

    def failed(self, exc: BaseException) -> None:
        """Record what an attempt that raised got (its reason and message)."""
        reason, message = classify(exc)
        self.last = UpstreamFailure(reason, message, None)

    def reported(self, completion: Any) -> None:
        """Add the cost a completion (or a stream's usage chunk) reports, if any."""
        usage = completion.get("usage") if isinstance(completion, dict) else None
        cost = usage.get("cost") if isinstance(usage, dict) else None
        if isinstance(cost, int | float) and not isinstance(cost, bool) and cost >= 0:
            self.cost = (self.cost or 0.0) + float(cost)


_CALL: ContextVar[CallRecord | None] = ContextVar("langfusion_call", default=None)


@asynccontextmanager
async def call_deadline(seconds: float) -> AsyncIterator[CallRecord]:
    """Bound the model calls made in this block, retries and their waits included.

    Yields the block's :class:`CallRecord` (what the calls were reported to cost).

    Raises:
        PanelDeadlineError: The deadline cut an attempt in flight (a ``timeout``).
        UpstreamFailure: The deadline ended a wait between attempts; it
            carries what the last attempt got (status, reason, message).
    """
    call = CallRecord(time.monotonic() + seconds)
    token = _CALL.set(call)
    try:
        async with asyncio.timeout(seconds) as scope:
            yield call
    except TimeoutError as exc:
        if not scope.expired():
            raise
        if call.cut or call.last is None:
            raise PanelDeadlineError(f"no answer within {seconds:g}s") from exc
        last = call.last
        raise UpstreamFailure(
            last.reason,
            f"{last} (retries stopped by the {seconds:g}s deadline)",
            last.status_code,
        ) from exc
    finally:
        _CALL.reset(token)
        # A stream the block left unread (it was cancelled, or it raised) is closed
        # now, so its connection closes at once, not when the collector reaches it.
        for stream in call.streams:
            with contextlib.suppress(Exception):
                await stream.aclose()


def _credentials(request: httpx.Request) -> set[str]:
    """The secrets this request carries (its key), to scrub from what comes back."""
    values: set[str] = set()
    for name in _CREDENTIAL_HEADERS:
        value = request.headers.get(name)
        if value:
            values.add(value)
            values.add(value.split(" ", 1)[-1])
    return secret_values(values)


def _wait_outlasts_deadline(response: httpx.Response, call: CallRecord | None) -> bool:
    status = response.status_code
    if call is None or not (status in _RETRYABLE or status >= 500):
        return False
    wait = retry_after_s(response)
    return wait is not None and wait > call.deadline - time.monotonic()


def _not_a_completion(request: httpx.Request, text: str, call: CallRecord | None) -> str | None:
    """Why a 2xx chat-completion body is unusable (malformed, an error object), or ``None``.

    A usable completion's reported cost goes on ``call``.
    """
    if not request.url.path.endswith("/chat/completions"):
        return None
    try:
        data = json.loads(text)
    except ValueError:
        return "the endpoint answered 200 with a body that is not JSON"
    if not isinstance(data, dict):
        return "the endpoint answered 200 with JSON that is not a completion"
    if data.get("error"):
        return f"the endpoint answered 200 with an error: {api_message(data, str(data['error']))}"
    if not isinstance(data.get("choices"), list) or not data["choices"]:
        return "the endpoint answered 200 with a completion that has no choices"
    if call is not None:
        call.reported(data)
    return None


def _vet(
    request: httpx.Request, response: httpx.Response, body: bytes, call: CallRecord | None
) -> httpx.Response:
    """The response rebuilt from ``body`` with every secret gone (and its failure recorded)."""
    secrets = _credentials(request)
    headers = _headers(response, secrets)
    status = response.status_code
    text = body.decode("utf-8", errors="replace")
    if status >= 400:
        text = redact(text, secrets)
        if _wait_outlasts_deadline(response, call):
            headers.append(("x-should-retry", "false"))
        if call is not None:
            message = _message_of(text)
            call.last = UpstreamFailure(
                reason_for_status(status, message), short(f"HTTP {status}: {message}"), status
            )
    elif (problem := _not_a_completion(request, text, call)) is not None:
        message = short(redact(problem, secrets))
        if call is not None:
            call.last = UpstreamFailure("upstream_error", message, status)
        headers = [(k, v) for k, v in headers if k.lower() != "content-type"]
        headers += [("content-type", "application/json"), (ORIGINAL_STATUS_HEADER, str(status))]
        status, text = 502, json.dumps({"error": {"message": message}})
    else:
        text = scrub(text, secrets)
    # The body was decoded from any Content-Encoding, and its length changed.
    return httpx.Response(
        status,
        headers=headers,
        content=text.encode(),
        extensions=response.extensions,
        request=request,
    )


def _headers(response: httpx.Response, secrets: set[str]) -> list[tuple[str, str]]:
    """The headers to pass on, scrubbed, without those that described the original body."""
    return [
        (k, scrub(v, secrets))
        for k, v in response.headers.multi_items()
        if k.lower() not in _DROPPED_HEADERS
    ]


def _message_of(text: str) -> str:
    try:
        return api_message(json.loads(text), text)
    except ValueError:
        return text


def _is_event_stream(response: httpx.Response) -> bool:
    content_type: str = response.headers.get("content-type", "")
    return content_type.startswith("text/event-stream")


def _scrub_line(line: bytes, secrets: set[str], call: CallRecord | None) -> bytes:
    text = line.decode("utf-8", errors="replace")
    if '"error"' not in text:
        if call is not None and '"cost"' in text and text.startswith("data:"):
            with contextlib.suppress(ValueError):
                call.reported(json.loads(text[5:]))
        return scrub(text, secrets).encode()
    text = redact(text, secrets)
    if call is not None:
        call.last = UpstreamFailure("upstream_error", short(f"stream error event: {text}"), None)
    return text.encode()


class _RedactedEvents(httpx.AsyncByteStream):
    """An event stream passed on line by line, each line scrubbed; the call is told its end."""

    def __init__(
        self, response: httpx.Response, secrets: set[str], call: CallRecord | None
    ) -> None:
        self._response = response
        self._secrets = secrets
        self._call = call
        self._open = call is not None
        if call is not None:
            call.streams.append(self)

    async def __aiter__(self) -> AsyncIterator[bytes]:
        pending = b""
        try:
            async for chunk in self._response.aiter_bytes():
                *lines, pending = (pending + chunk).split(b"\n")
                if lines:
                    yield b"".join(_scrub_line(x, self._secrets, self._call) + b"\n" for x in lines)
            if pending:
                yield _scrub_line(pending, self._secrets, self._call)
        except asyncio.CancelledError:
            if self._call is not None and self._open:
                self._call.cut = True
            raise
        except Exception as exc:
            if self._call is not None:
                self._call.failed(exc)
            raise
        finally:
            self._done()

    async def aclose(self) -> None:
        self._done()
        await self._response.aclose()

    def _done(self) -> None:
        if self._open and self._call is not None:
            self._call.in_flight -= 1
            self._open = False


class RedactingTransport(httpx.AsyncBaseTransport):
    """Scrubs credentials from every response, records each call's failed attempts.

    The ``openai`` client puts the body of an error response (or the data of
    a stream's error event) into the exception message, and from there it
    reaches logs, results and traces. Redacting here, before any exception
    exists, keeps a key that a provider echoes out of all of them, whatever
    the status.
    """

    def __init__(self, inner: httpx.AsyncBaseTransport) -> None:
        self._inner = inner

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        """Send ``request``; hand back the response with its credentials scrubbed."""
        call = _CALL.get()
        streaming = False
        if call is not None:
            call.in_flight += 1
        try:
            response = await self._inner.handle_async_request(request)
            if response.status_code < 300 and _is_event_stream(response):
                streaming = True
                secrets = _credentials(request)
                return httpx.Response(
                    response.status_code,
                    headers=_headers(response, secrets),
                    stream=_RedactedEvents(response, secrets, call),
                    extensions=response.extensions,
                    request=request,
                )
            try:
                body = await response.aread()
            finally:
                await response.aclose()
            return _vet(request, response, body, call)
        except asyncio.CancelledError:
            if call is not None:
                call.cut = True
            raise
        except Exception as exc:
            if call is not None:
                call.failed(exc)
            raise
        finally:
            if call is not None and not streaming:
                call.in_flight -= 1

    async def aclose(self) -> None:
        """Close the wrapped transport."""
        await self._inner.aclose()


class _RedactedSyncEvents(httpx.SyncByteStream):
    def __init__(self, response: httpx.Response, secrets: set[str]) -> None:
        self._response = response
        self._secrets = secrets

    def __iter__(self) -> Iterator[bytes]:
        pending = b""
        for chunk in self._response.iter_bytes():
            *lines, pending = (pending + chunk).split(b"\n")
            if lines:
                yield b"".join(_scrub_line(x, self._secrets, None) + b"\n" for x in lines)
        if pending:
            yield _scrub_line(pending, self._secrets, None)

    def close(self) -> None:
        self._response.close()


class _RedactingSyncTransport(httpx.BaseTransport):
    """The same scrubbing for the sync path (a registry model called with ``invoke``)."""

    def __init__(self, inner: httpx.BaseTransport) -> None:
        self._inner = inner

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        response = self._inner.handle_request(request)
        if response.status_code < 300 and _is_event_stream(response):
            secrets = _credentials(request)
            return httpx.Response(
                response.status_code,
                headers=_headers(response, secrets),
                stream=_RedactedSyncEvents(response, secrets),
                extensions=response.extensions,
                request=request,
            )
        try:
            body = response.read()
        finally:
            response.close()
        return _vet(request, response, body, None)

    def close(self) -> None:
        self._inner.close()
