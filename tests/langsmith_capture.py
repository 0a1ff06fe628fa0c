"""A LangSmith stand-in on 127.0.0.1 that records what a tracing client sends.

It answers ``GET /info`` with ``{}`` and accepts runs in every shape the
``langsmith`` client posts them: plain JSON (``POST /runs``, ``PATCH
/runs/{id}``, with ``auto_batch_tracing=False``), ``POST /runs/batch`` and
``POST /runs/multipart``. ``runs()`` merges each run's posts and patches;
``raw()`` is every byte received (request lines, headers and bodies), for
searching for secrets.
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass
from email.parser import BytesParser
from email.policy import HTTP
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass(frozen=True)
class Received:
    """One request as it arrived."""

    method: str
    path: str
    headers: list[tuple[str, str]]
    body: bytes

    def raw(self) -> bytes:
        head = f"{self.method} {self.path}\r\n" + "".join(f"{k}: {v}\r\n" for k, v in self.headers)
        return head.encode() + b"\r\n" + self.body


class CaptureServer:
    """The endpoint; use as a context manager."""

    def __init__(self) -> None:
        self.received: list[Received] = []
        self._lock = threading.Lock()
        capture = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _answer(self) -> None:
                length = int(self.headers.get("content-length") or 0)
                body = self.rfile.read(length) if length else b""
                with capture._lock:
                    capture.received.append(
                        Received(self.command, self.path, list(self.headers.items()), body)
                    )
                payload = b"{}"
                self.send_response(200)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            do_GET = do_POST = do_PATCH = _answer

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def __enter__(self) -> CaptureServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(10)

    def raw(self) -> bytes:
        with self._lock:
            return b"\n".join(r.raw() for r in self.received)

    def runs(self) -> dict[str, dict[str, Any]]:
        """Every run by id, its creation and its updates merged in arrival order."""
        runs: dict[str, dict[str, Any]] = {}

        def merge(run_id: str, fields: dict[str, Any]) -> None:
            runs.setdefault(run_id, {"id": run_id}).update(fields)

        with self._lock:
            received = list(self.received)
        for request in received:
            path = request.path.split("?")[0]
            if request.method == "POST" and path == "/runs":
                run = json.loads(request.body)
                merge(run["id"], run)
            elif request.method == "PATCH" and path.startswith("/runs/"):
                merge(path.rsplit("/", 1)[1], json.loads(request.body))
            elif request.method == "POST" and path == "/runs/batch":
                batch = json.loads(request.body)
                for run in [*batch.get("post", []), *batch.get("patch", [])]:
                    merge(run["id"], run)
            elif request.method == "POST" and path == "/runs/multipart":
                for name, value in _multipart(request):
                    # Parts are named "post.<id>", "patch.<id>" or "<op>.<id>.<field>".
                    _, run_id, *field = name.split(".", 2)
                    merge(run_id, {field[0]: value} if field else value)
        return runs


def _multipart(request: Received) -> list[tuple[str, Any]]:
    content_type = dict(request.headers).get("Content-Type") or dict(request.headers).get(
        "content-type", ""
    )
    message = BytesParser(policy=HTTP).parsebytes(
        f"Content-Type: {content_type}\r\n\r\n".encode() + request.body
    )
    parts = []
    for part in message.iter_parts():
        name = part.get_param("name", header="content-disposition")
        payload = part.get_payload(decode=True)
        if isinstance(name, str) and isinstance(payload, bytes):
            parts.append((name, json.loads(payload)))
    return parts
