"""OpenRouter-shaped errors: ``{"error": {"code": <HTTP status>, "message", "metadata"}}``."""

from __future__ import annotations

import logging
from typing import Any

import openai

from langfusion.graph.errors import MissingAPIKeyError, classify, short, status_of
from langfusion.graph.schema import FusionResult

__all__ = ["ApiError", "alias_failure", "unexpected", "upstream_failure"]

_log = logging.getLogger("langfusion.api")

# What the alias answers when its run produced nothing usable, by the run's failure reason.
_ALIAS_STATUS = {
    "rate_limited": 429,
    "insufficient_credits": 402,
    "budget_exceeded": 402,
    "invalid_request": 400,
    "recursion_blocked": 400,
    "missing_api_key": 500,
    "local_model_unavailable": 503,
}
# An upstream status a client can act on keeps its meaning; the rest is the upstream's failure.
_PASSED_ON = frozenset({400, 402, 404, 408, 413, 422, 429})


class ApiError(Exception):
    """A request that cannot be served, as the HTTP status and body a client reads.

    Args:
        status: The HTTP status.
        message: What went wrong, for a person (never a key).
        metadata: Machine-readable details (``metadata.fusion``: the run's result).
    """

    def __init__(self, status: int, message: str, *, metadata: dict[str, Any] | None = None):
        super().__init__(message)
        self.status = status
        self.message = message
        self.metadata = metadata

    def body(self) -> dict[str, Any]:
        """The error body."""
        error: dict[str, Any] = {"code": self.status, "message": self.message}
        if self.metadata:
            error["metadata"] = self.metadata
        return {"error": error}


def upstream_failure(exc: BaseException, slug: str) -> ApiError:
    """The error a client gets when the model answering its request failed.

    The message is secret-free (``classify`` redacts keys and bearer tokens,
    whatever the upstream echoed). An upstream that refused this server's own
    key is the server's problem, not the client's token: it is a 502.
    """
    if isinstance(exc, MissingAPIKeyError):
        return ApiError(500, f"this server cannot call {slug}: {exc}")
    reason, message = classify(exc)
    status = status_of(exc)
    if status is None:
        code = 408 if reason == "timeout" else 502
    elif status in _PASSED_ON:
        code = status
    else:
        code = 502
    if isinstance(exc, openai.NotFoundError) or reason == "model_not_found":
        return ApiError(404, f"model {slug!r} was not found upstream: {message}")
    return ApiError(code, f"{slug}: {message}", metadata={"reason": reason})


def alias_failure(result: FusionResult) -> ApiError:
    """The error the alias answers with when its run produced nothing usable."""
    reason = result.failure_reason or "all_panels_failed"
    status = _ALIAS_STATUS.get(reason, 502)
    message = result.error or "the fusion run produced nothing usable"
    return ApiError(
        status,
        f"fusion failed ({reason}): {message}",
        metadata={"fusion": result.model_dump(mode="json")},
    )


def unexpected(exc: BaseException) -> ApiError:
    """A failure nobody foresaw, logged and answered as a 500, without any key in either."""
    message = short(f"{type(exc).__name__}: {exc}")
    _log.error("unexpected failure: %s", message)
    return ApiError(500, f"unexpected_error: {message}")
