"""Who may call the API: bearer tokens from ``LANGFUSION_API_KEYS`` or ``--api-key``."""

from __future__ import annotations

import hmac
import os
import secrets
from collections.abc import Iterable

__all__ = ["API_KEYS_ENV", "BearerTokens", "new_token"]

API_KEYS_ENV = "LANGFUSION_API_KEYS"


def new_token() -> str:
    """A fresh random token, for a server started with none."""
    return "lf-" + secrets.token_urlsafe(24)


class BearerTokens:
    """The tokens that open the API; every request must carry one as ``Authorization: Bearer``.

    Args:
        tokens: The accepted tokens; ``None`` reads ``LANGFUSION_API_KEYS``
            (comma-separated).

    Raises:
        ValueError: There is no token at all: an API nobody can call, or
            one everybody could, is refused at start.
    """

    def __init__(self, tokens: Iterable[str] | None = None) -> None:
        given = tokens if tokens is not None else os.environ.get(API_KEYS_ENV, "").split(",")
        self._tokens = tuple(t.strip().encode() for t in given if t and t.strip())
        if not self._tokens:
            raise ValueError(
                f"the API needs at least one token: set {API_KEYS_ENV} or pass --api-key."
            )

    def allows(self, authorization: str | None) -> bool:
        """Whether an ``Authorization`` header value carries one of the tokens."""
        scheme, _, token = (authorization or "").strip().partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            return False
        given = token.strip().encode()
        # Every token is compared, so the time taken says nothing about which one was close.
        matches = [hmac.compare_digest(given, known) for known in self._tokens]
        return any(matches)
