"""Running the playground: bind the address first (so port 0 can be told), then serve."""

from __future__ import annotations

import ipaddress
import socket

import uvicorn
from starlette.types import ASGIApp

__all__ = ["bind", "serve", "url_of"]


def bind(host: str, port: int) -> socket.socket:
    """A listening socket on ``host``:``port`` (``0``: any free port).

    Raises:
        OSError: The address is taken or cannot be bound.
    """
    name = host.strip("[]")
    family = socket.AF_INET6 if ":" in name else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((name, port))
        sock.listen(128)
    except OSError:
        sock.close()
        raise
    return sock


def url_of(sock: socket.socket) -> str:
    """The page's address for a bound socket (a wildcard address shown as loopback)."""
    host, port = sock.getsockname()[:2]
    address = ipaddress.ip_address(host)
    if address.is_unspecified:
        host = "127.0.0.1" if address.version == 4 else "::1"
    shown = f"[{host}]" if ":" in host else host
    return f"http://{shown}:{port}/"


def serve(app: ASGIApp, sock: socket.socket) -> None:
    """Serve ``app`` on ``sock`` until interrupted (Ctrl-C stops runs in flight, then exits)."""
    config = uvicorn.Config(
        app,
        log_level="warning",
        access_log=False,
        lifespan="on",
        # Open event streams would hold a graceful shutdown forever.
        timeout_graceful_shutdown=3,
    )
    uvicorn.Server(config).run(sockets=[sock])
