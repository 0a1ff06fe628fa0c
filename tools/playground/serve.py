"""Running the playground: bind the address first (so port 0 can be told), then serve.

With several workers each is a process of its own that builds its own
application (its own database connection, its own connection pools) and
accepts on the one bound socket. The API keeps nothing between requests, and
the playground's runs live in the SQLite file the workers share (a run is
driven by the worker that started it and followed or stopped from any), so
any worker serves any request. Each response says which worker answered it
(``x-langfusion-worker``: its process id).
"""

from __future__ import annotations

import contextlib
import ipaddress
import multiprocessing
import multiprocessing.connection
import os
import signal
import socket
from collections.abc import Callable
from types import FrameType

import uvicorn
from starlette.types import ASGIApp, Message, Receive, Scope, Send

__all__ = ["WORKER_HEADER", "bind", "serve", "serve_workers", "url_of"]

WORKER_HEADER = "x-langfusion-worker"


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
        # A worker that dies is reaped at once: until then its pid would look
        # alive to the others, and its runs would not read as interrupted.
        running = list(processes)
        while running:
            multiprocessing.connection.wait([process.sentinel for process in running])
            for process in [process for process in running if not process.is_alive()]:
                process.join()
                running.remove(process)
    except KeyboardInterrupt:
        for process in processes:
            with contextlib.suppress(ProcessLookupError):
                process.terminate()
        for process in processes:
            process.join(10)
    finally:
        signal.signal(signal.SIGTERM, previous)


def _work(build_app: Callable[[], ASGIApp], sock: socket.socket) -> None:
    serve(_NamesWorker(build_app()), sock)


class _NamesWorker:
    """ASGI middleware: every response names the worker process that answered it."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.header = (WORKER_HEADER.encode(), str(os.getpid()).encode())

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def named(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), self.header]
            await send(message)

        await self.app(scope, receive, named)
