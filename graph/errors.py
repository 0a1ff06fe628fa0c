"""Failure classes, retry decisions and secret-free failure descriptions.

Every failure a run reports is one of the closed sets of reasons in
``langfusion.graph.schema`` (``PanelFailureReason``, ``RunFailureReason``);
:func:`classify` is the one place an exception becomes such a reason.
"""

from __future__ import annotations

import functools
import os
import re
from collections.abc import Iterable
from email.utils import parsedate_to_datetime
from time import time
from typing import Any, ClassVar

import httpx
import openai
from langgraph.errors import NodeTimeoutError

from langfusion.graph.schema import PanelFailureReason, RunFailureReason

MAX_ERROR_CHARS = 300
MAX_RETRY_AFTER_S = 60.0

_SECRET_PATTERNS = (
    re.compile(r"(?i)(bearer\s+)[^\s'\",]+"),
    re.compile(r"(?i)(authorization['\"]?\s*[:=]\s*['\"]?)[^'\",}\s]+(\s+[^'\",}\s]+)?"),
    re.compile(r"(?i)((?:api[_-]?key|token|secret)['\"]?\s*[:=]\s*['\"]?)[^'\",}\s]+"),
    re.compile(r"\b(sk-[A-Za-z0-9_\-]{2})[A-Za-z0-9_\-]{6,}"),
)
_SECRET_ENV = re.compile(r"(?i)(api_?key|token|secret|password)")
_MIN_SECRET_CHARS = 8
REDACTED = "[redacted]"
# The transport turns a 200 that is no completion into a 502 (so the client
# retries it); this header keeps the status the endpoint really sent.
ORIGINAL_STATUS_HEADER = "x-langfusion-original-status"


def _error_types() -> tuple[tuple[type[BaseException], ...], ...]:
    """Transport, timeout and status errors of httpx 0.x and of httpx2 (openai 3's stack)."""
    transport: list[type[BaseException]] = [httpx.TransportError]
    timeouts: list[type[BaseException]] = [httpx.TimeoutException]
    statuses: list[type[BaseException]] = [httpx.HTTPStatusError]
    try:
        import httpx2
    except ImportError:  # openai 2.x runs on httpx itself
        pass
    else:
        transport.append(httpx2.TransportError)
        timeouts.append(httpx2.TimeoutException)
        statuses.append(httpx2.HTTPStatusError)
    return tuple(transport), tuple(timeouts), tuple(statuses)


_TRANSPORT_ERRORS, _TIMEOUT_ERRORS, _STATUS_ERRORS = _error_types()
_CONNECTION_ERRORS = (openai.APIConnectionError, ConnectionError, *_TRANSPORT_ERRORS)


class MissingAPIKeyError(ValueError):
    """A remote model was asked for while the variable holding its key is unset."""

    def __init__(self, env_var: str, slug: str) -> None:
        self.env_var = env_var
        super().__init__(
            f"{slug} needs an API key: set {env_var} (for example `export {env_var}=...`), "
            "or run offline on the embedded model with preset='local' "
            "(`langfusion ask --preset local ...`)."
        )


class ModelUnavailableError(RuntimeError):
    """A model's provider cannot serve it at all (the embedded server won't start).

    Attributes:
        reason: The run's ``failure_reason``.
    """

    reason: ClassVar[RunFailureReason] = "local_model_unavailable"


class EmptyCompletionError(ValueError):
    """A model answered with no text."""


class RefusedError(ValueError):
    """The provider marked the answer as a refusal (``refusal``, ``content_filter``)."""


class CutAfterQuorumError(Exception):
    """A panelist still running when the quorum's grace ended: its call was cancelled."""


class PanelDeadlineError(TimeoutError):
    """A model call ran out of its deadline while an attempt was in flight."""


class UpstreamFailure(Exception):
    """The last failed attempt of a call whose deadline ended while it waited to retry.

    The client retries 429, 5xx and broken connections itself; when the
    deadline falls during the wait between attempts, what the call reports is
    this last answer, not a timeout.

    Attributes:
        reason: The failure reason of that attempt.
        status_code: Its HTTP status, if one was received.
    """

    def __init__(self, reason: PanelFailureReason, message: str, status_code: int | None) -> None:
        self.reason: PanelFailureReason = reason
        self.status_code = status_code
        super().__init__(message)


def secret_values(extra: Iterable[str] = ()) -> set[str]:
    """The values to scrub from text: secret-named environment values and ``extra``.

    The environment is read afresh on every call (a key set since is found);
    only the verdict on each variable's name is remembered, since the
    transport asks once per response.
    """
    values: set[str] = set()
    for name in os.environ:
        if _secret_name(name):
            value = os.environ.get(name, "")
            if len(value) >= _MIN_SECRET_CHARS:
                values.add(value)
    values.update(v for v in extra if len(v) >= _MIN_SECRET_CHARS)
    return values


@functools.lru_cache(maxsize=1024)
def _secret_name(name: str) -> bool:
    return _SECRET_ENV.search(name) is not None


def scrub(text: str, secrets: Iterable[str]) -> str:
    """Replace every occurrence of each of ``secrets`` in ``text``; nothing else changes."""
    for value in secrets:
        if value in text:
            text = text.replace(value, REDACTED)
    return text


def redact(text: str, secrets: Iterable[str] = ()) -> str:
    """Remove API keys, bearer tokens and secret values from ``text``.

    Args:
        text: Text that may quote a credential (an error body, a message).
        secrets: Known secret values to remove as well (the key a request sent).
    """
    text = scrub(text, secret_values(secrets))
    for pattern in _SECRET_PATTERNS:
        text = pattern.sub(lambda m: f"{m.group(1)}{REDACTED}", text)
    return text


def status_of(exc: BaseException) -> int | None:
    """The HTTP status a failed call received, if it received one."""
    if isinstance(exc, openai.APIStatusError):
        original = exc.response.headers.get(ORIGINAL_STATUS_HEADER, "")
        return int(original) if original.isdigit() else exc.status_code
    if isinstance(exc, _STATUS_ERRORS):
        return int(getattr(exc, "response").status_code)  # noqa: B009 - two httpx stacks
    status = getattr(exc, "status_code", None)
    return status if isinstance(status, int) and not isinstance(status, bool) else None


def is_transient(exc: BaseException) -> bool:
    """Whether retrying may help: 408/409/429, 5xx and connection errors; never other 4xx."""
    if isinstance(exc, UpstreamFailure):
        return False  # the call's retries and its deadline are spent already
    status = status_of(exc)
    if status is not None:
        return status in (408, 409, 429) or status >= 500
    if isinstance(exc, openai.APIError) and not isinstance(
        exc, openai.APIConnectionError | openai.APIResponseValidationError
    ):
        return True  # an error event in a stream: the upstream broke off, as a 5xx would
    return isinstance(exc, (*_CONNECTION_ERRORS, NodeTimeoutError)) and not isinstance(
        exc, (openai.APITimeoutError, *_TIMEOUT_ERRORS)
    )


def retry_after_s(source: object) -> float | None:
    """Seconds a 429 or 503 asks the caller to wait (``Retry-After``), if it says.

    Args:
        source: The HTTP response, or an exception that carries one.
    """
    response: Any = (
        getattr(source, "response", None) if isinstance(source, BaseException) else source
    )
    headers = getattr(response, "headers", None)
    if headers is None:
        return None
    raw = headers.get("retry-after-ms")
    if raw is not None:
        try:
            return _finite_wait(float(raw) / 1000)
        except ValueError:
            pass
    raw = headers.get("retry-after")
    if raw is None:
        return None
    try:
        return _finite_wait(float(raw))
    except ValueError:
        try:
            return _finite_wait(parsedate_to_datetime(raw).timestamp() - time())
        except (TypeError, ValueError, OverflowError):
            return None


def _finite_wait(seconds: float) -> float | None:
    return max(0.0, seconds) if seconds == seconds else None  # NaN says nothing


def api_message(body: object, fallback: str) -> str:
    """The human part of an error body: ``error.message``, or ``fallback``."""
    if isinstance(body, dict):
        error = body.get("error", body)
        message = error.get("message") if isinstance(error, dict) else error
        if isinstance(message, str) and message:
            return message
    return fallback


def _api_message(exc: BaseException) -> str:
    message = getattr(exc, "message", None)
    fallback = message if isinstance(message, str) and message else str(exc)
    return api_message(getattr(exc, "body", None), fallback)


_CONTEXT_LENGTH = re.compile(
    r"(?i)context[ _]length|context window|maximum context|too many tokens|prompt is too long"
)
_BY_STATUS: dict[int, PanelFailureReason] = {
    401: "unauthorized",
    402: "insufficient_credits",
    403: "forbidden",
    404: "model_not_found",
    408: "timeout",
    429: "rate_limited",
}


def reason_for_status(status: int, message: str = "") -> PanelFailureReason:
    """The failure reason an HTTP status (and its error message) stands for."""
    if status in _BY_STATUS:
        return _BY_STATUS[status]
    if 400 <= status < 500:
        return "context_length_exceeded" if _CONTEXT_LENGTH.search(message) else "invalid_request"
    return "upstream_error"


def classify(exc: BaseException) -> tuple[PanelFailureReason, str]:
    """A failure reason and a short, secret-free message for a failed model call."""
    status = status_of(exc)
    reason: PanelFailureReason
    if isinstance(exc, UpstreamFailure):
        reason, text = exc.reason, str(exc)
    elif isinstance(exc, CutAfterQuorumError):
        reason, text = "cut_after_quorum", str(exc)
    elif isinstance(exc, TimeoutError | NodeTimeoutError | openai.APITimeoutError) or isinstance(
        exc, _TIMEOUT_ERRORS
    ):
        reason, text = "timeout", str(exc) or "the call timed out"
    elif isinstance(exc, MissingAPIKeyError):
        reason, text = "unauthorized", str(exc)
    elif isinstance(exc, EmptyCompletionError):
        reason, text = "empty_completion", str(exc) or "the model returned no text"
    elif isinstance(exc, RefusedError):
        reason, text = "refused", str(exc) or "the provider refused to answer"
    elif status is not None:
        message = _api_message(exc)
        reason, text = reason_for_status(status, message), f"HTTP {status}: {message}"
    elif isinstance(exc, _CONNECTION_ERRORS):
        reason, text = "connection_error", f"could not reach the endpoint ({type(exc).__name__})"
    else:
        # Whatever else a model call raised came from what the endpoint sent
        # (a body the client could not read) or from the provider's client.
        reason, text = "upstream_error", f"{type(exc).__name__}: {exc}"
    return reason, short(text)


def short(text: str) -> str:
    """``text`` on one line, secret-free, and at most ``MAX_ERROR_CHARS`` long."""
    text = redact(" ".join(text.split()))
    if len(text) > MAX_ERROR_CHARS:
        text = text[: MAX_ERROR_CHARS - 1] + "…"
    return text
