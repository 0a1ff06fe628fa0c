"""Who may talk to the playground: its own Host, its own Origin, and headers that fence the page.

The server holds the user's API key, so a page elsewhere must not drive it:
a foreign ``Host`` (DNS rebinding: a hostile name resolving to 127.0.0.1) is
refused outright, and so is any request whose ``Origin`` or
``Sec-Fetch-Site`` says it comes from another site. Every response carries a
Content-Security-Policy that lets the page run only its own script.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable

from starlette.types import ASGIApp, Message, Receive, Scope, Send

__all__ = ["LOOPBACK_NAMES", "HostOriginGuard", "allowed_hostnames"]

LOOPBACK_NAMES = ("127.0.0.1", "localhost", "[::1]")

_CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; font-src 'self'; base-uri 'none'; form-action 'self'; "
    "frame-ancestors 'none'"
)
_HEADERS = [
    (b"content-security-policy", _CSP.encode()),
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),
    (b"cross-origin-opener-policy", b"same-origin"),
    (b"cross-origin-resource-policy", b"same-origin"),
]
_SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def allowed_hostnames(host: str) -> frozenset[str]:
    """The names a browser may use for a server bound to ``host`` (as ``Host`` spells them)."""
    name = host.strip("[]")
    try:
        address = ipaddress.ip_address(name)
    except ValueError:
        return frozenset({host.lower(), *(LOOPBACK_NAMES if host == "localhost" else ())})
    spelled = f"[{name}]" if address.version == 6 else name
    if address.is_loopback or address.is_unspecified:
        return frozenset({spelled, *LOOPBACK_NAMES})
    return frozenset({spelled})


class HostOriginGuard:
    """ASGI middleware: refuse foreign hosts and origins; add the page's security headers.

    Args:
        app: The application it guards.
        hostnames: The names the server answers to; the port must be the one
            the request came in on.
    """

    def __init__(self, app: ASGIApp, hostnames: Iterable[str]) -> None:
        self.app = app
        self.hostnames = frozenset(name.lower() for name in hostnames)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Answer a refused request with 403; pass the rest on, with the security headers."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        host = headers.get("host", "")
        why = self._refusal(scope, host, headers)
        if why is not None:
            await _refuse(send, why)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), *_HEADERS]
            await send(message)

        await self.app(scope, receive, send_with_headers)

    def _refusal(self, scope: Scope, host: str, headers: dict[str, str]) -> str | None:
        if not self._own_host(scope, host):
            return "this playground answers only to its own address (Host refused)"
        origin = headers.get("origin")
        if origin is not None and origin != f"http://{host}":
            return "requests from another site are refused (Origin refused)"
        site = headers.get("sec-fetch-site")
        if (
            site is not None
            and site not in ("same-origin", "none")
            and not _opens_page(scope, headers)
        ):
            return "requests from another site are refused (Sec-Fetch-Site refused)"
        if scope["method"] not in _SAFE_METHODS and origin is None and site is not None:
            return "a browser request that changes state must carry its Origin"
        return None

    def _own_host(self, scope: Scope, host: str) -> bool:
        name, port = _split_host(host.lower())
        server = scope.get("server")
        return name in self.hostnames and server is not None and (port or "80") == str(server[1])


def _opens_page(scope: Scope, headers: dict[str, str]) -> bool:
    """A link followed from another site to the page itself: harmless, and allowed."""
    return (
        scope["method"] == "GET"
        and scope["path"] == "/"
        and headers.get("sec-fetch-mode") == "navigate"
        and headers.get("origin") is None
    )


def _split_host(host: str) -> tuple[str, str]:
    """``Host`` as (name, port): ``[::1]:8765`` is ``("[::1]", "8765")``."""
    if host.startswith("["):
        name, bracket, rest = host.partition("]")
        return name + bracket, rest.removeprefix(":") if rest.startswith(":") or not rest else "?"
    name, _, port = host.partition(":")
    return name, port


async def _refuse(send: Send, why: str) -> None:
    body = f"Forbidden: {why}.\n".encode()
    await send(
        {
            "type": "http.response.start",
            "status": 403,
            "headers": [
                (b"content-type", b"text/plain; charset=utf-8"),
                (b"content-length", str(len(body)).encode()),
                *_HEADERS,
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
