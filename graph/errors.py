"""Failure classes, retry decisions and secret-free failure descriptions."""

from __future__ import annotations

import os
import re
from email.utils import parsedate_to_datetime
from time import time
from typing import Any

import httpx
import openai
from langgraph.errors import NodeTimeoutError

MAX_ERROR_CHARS = 300
MAX_RETRY_AFTER_S = 60.0

_SECRET_PATTERNS = (
    re.compile(r"(?i)(bearer\s+)[^\s'\",]+"),
    re.compile(r"(?i)(authorization['\"]?\s*[:=]\s*['\"]?)[^'\",}\s]+(\s+[^'\",}\s]+)?"),
    re.compile(r"(?i)((?:api[_-]?key|token|secret)['\"]?\s*[:=]\s*['\"]?)[^'\",}\s]+"),
    re.compile(r"\b(sk-[A-Za-z0-9_\-]{2})[A-Za-z0-9_\-]{6,}"),
)
_SECRET_ENV = re.compile(r"(?i)(api_?key|token|secret|password)")


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
    """A model's provider cannot serve it at all (for example the embedded server won't start).

    Attributes:
        reason: The run's ``failure_reason`` (``local_model_unavailable`` for the embedded model).
    """

    reason: str = "model_unavailable"


class EmptyCompletionError(ValueError):
    """A model answered with no text."""


class PanelDeadlineError(TimeoutError):
    """A panel call ran out of its ``timeout_s`` (retries included)."""


class RateLimitedError(ValueError):
    """Rate limited for longer than the call's remaining time allows."""


def redact(text: str) -> str:
    """Remove API keys, bearer tokens and secret environment values from ``text``."""
    for name, value in os.environ.items():
        if len(value) >= 8 and _SECRET_ENV.search(name) and value in text:
            text = text.replace(value, "[redacted]")
    for pattern in _SECRET_PATTERNS:
        text = pattern.sub(lambda m: f"{m.group(1)}[redacted]", text)
    return text


def _status(exc: BaseException) -> int | None:
    if isinstance(exc, openai.APIStatusError):
        return exc.status_code
    if isinstance(exc, httpx.HTTPStatusError):
        return exc.response.status_code
    status = getattr(exc, "status_code", None)
    return status if isinstance(status, int) else None


def is_transient(exc: BaseException) -> bool:
    """Whether retrying may help: 408/409/429, 5xx and connection errors; never other 4xx."""
    status = _status(exc)
    if status is not None:
        return status in (408, 409, 429) or status >= 500
    return isinstance(
        exc,
        openai.APIConnectionError | httpx.TransportError | ConnectionError | NodeTimeoutError,
    ) and not isinstance(exc, openai.APITimeoutError | httpx.TimeoutException)


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
            return max(0.0, float(raw) / 1000)
        except ValueError:
            pass
    raw = headers.get("retry-after")
    if raw is None:
        return None
    try:
        return max(0.0, float(raw))
    except ValueError:
        try:
            return max(0.0, parsedate_to_datetime(raw).timestamp() - time())
        except (TypeError, ValueError):
            return None


def _api_message(exc: BaseException) -> str:
    body = getattr(exc, "body", None)
    if isinstance(body, dict):
        error = body.get("error", body)
        message = error.get("message") if isinstance(error, dict) else error
        if isinstance(message, str) and message:
            return message
    message = getattr(exc, "message", None)
    return message if isinstance(message, str) and message else str(exc)


def classify(exc: BaseException) -> tuple[str, str]:
    """A failure code and a short, secret-free message for a failed model call."""
    status = _status(exc)
    reason: str
    if isinstance(exc, PanelDeadlineError | NodeTimeoutError | TimeoutError) or isinstance(
        exc, openai.APITimeoutError | httpx.TimeoutException
    ):
        reason, text = "timeout", str(exc) or "the call timed out"
    elif isinstance(exc, RateLimitedError):
        reason, text = "rate_limited", str(exc)
    elif isinstance(exc, MissingAPIKeyError):
        reason, text = "missing_api_key", str(exc)
    elif isinstance(exc, EmptyCompletionError):
        reason, text = "empty_completion", str(exc) or "the model returned no text"
    elif status is not None:
        reason = {
            400: "invalid_request",
            401: "unauthorized",
            402: "insufficient_credits",
            403: "forbidden",
            404: "model_not_found",
            408: "timeout",
            413: "invalid_request",
            422: "invalid_request",
            429: "rate_limited",
        }.get(status, "upstream_error")
        text = f"HTTP {status}: {_api_message(exc)}"
    elif isinstance(exc, openai.APIConnectionError | httpx.TransportError | ConnectionError):
        reason, text = "connection_error", f"could not reach the endpoint ({type(exc).__name__})"
    else:
        reason, text = "error", f"{type(exc).__name__}: {exc}"
    text = redact(" ".join(text.split()))
    if len(text) > MAX_ERROR_CHARS:
        text = text[: MAX_ERROR_CHARS - 1] + "…"
    return reason, text
