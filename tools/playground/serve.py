"""Running the playground: bind the address first (so port 0 can be told), then serve.

With several workers each is a process of its own that builds its own
application (its own database connection, its own connection pools) and
accepts on the one bound socket; the API keeps nothing between requests, so
any worker serves any request.
"""

from __future__ import annotations

import contextlib
import ipaddress
import multiprocessing
import signal
import socket
from collections.abc import Callable
from types import FrameType

import uvicorn
from starlette.types import ASGIApp

__all__ = ["bind", "serve", "serve_workers", "url_of"]


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


def serve_workers(build_app: Callable[[], ASGIApp], sock: socket.socket, workers: int) -> None:
    """Serve on ``sock`` from ``workers`` processes, each with the app ``build_app`` builds.

    Ctrl-C (or SIGTERM to this process) stops every worker.
    """
    # Forked, not spawned: the builder and the socket need no pickling, and
    # each worker builds its application (its database connection, its
    # connection pools) after the fork.
    context = multiprocessing.get_context("fork")
    processes = [
        context.Process(target=_work, args=(build_app, sock), daemon=False) for _ in range(workers)
    ]
    for process in processes:
        process.start()

    def stop(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, stop)
    try:
        for process in processes:
            process.join()
    except KeyboardInterrupt:
        for process in processes:
            with contextlib.suppress(ProcessLookupError):
                process.terminate()
        for process in processes:
            process.join(10)
    finally:
        signal.signal(signal.SIGTERM, previous)


def _work(build_app: Callable[[], ASGIApp], sock: socket.socket) -> None:
    serve(build_app(), sock)
