"""What starting the embedded server takes, beside the server itself.

Its settings from the environment, the check that llama-cpp-python's server
is installed, its log, and the wait until it answers.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import subprocess
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import IO, TypeVar

from langfusion.graph.models.local.gguf import INSTALL_HINT, LocalModelError
from langfusion.graph.models.local.process import HOST

_T = TypeVar("_T")
_N = TypeVar("_N", int, float)

LOG_MAX_BYTES = 5_000_000
SERVER_MODULES = ("llama_cpp", "uvicorn", "fastapi", "sse_starlette", "pydantic_settings")


def wait_until_ready(
    proc: subprocess.Popen[bytes], port: int, model: str, timeout_s: float
) -> bool:
    """Poll ``GET /v1/models`` until this child lists ``model``; ``False`` on exit or timeout."""
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    url = f"http://{HOST}:{port}/v1/models"
    deadline = time.monotonic() + timeout_s
    delay = 0.05
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            return False
        try:
            with opener.open(url, timeout=2.0) as response:
                listed = json.load(response)
            ids = {entry.get("id") for entry in listed.get("data", [])}
            # Another program may own this port while our child is still loading.
            if model in ids and proc.poll() is None:
                return True
        except (OSError, ValueError, AttributeError):
            pass
        time.sleep(delay)
        delay = min(delay * 1.5, 0.5)
    return False


def check_server_installed() -> None:
    """Raise ``LocalModelError`` naming what of llama-cpp-python's server is missing."""
    missing = [name for name in SERVER_MODULES if importlib.util.find_spec(name) is None]
    if missing:
        raise LocalModelError(
            "The local model needs llama-cpp-python's server, which is not installed "
            f"(missing: {', '.join(missing)}). {INSTALL_HINT}"
        )


def default_cache_dir() -> Path:
    """Where the model file is kept: ``LANGFUSION_CACHE_DIR``, else the user's cache."""
    explicit = os.environ.get("LANGFUSION_CACHE_DIR")
    if explicit:
        return Path(explicit).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".cache"
    return base / "langfusion"


def default_threads() -> int:
    """llama.cpp threads: the usable cores but one, at most 8."""
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:
        usable = os.cpu_count() or 1
    # One core stays free: llama.cpp threads spin at barriers, and on a loaded
    # 2-core machine two of them stalled to ~2 tokens/s where one kept ~45.
    return max(1, min(usable - 1, 8))


def first_given(*values: _T | None) -> _T:
    """The first value that is not ``None``."""
    return next(value for value in values if value is not None)


def env_int(name: str) -> int | None:
    """The integer in variable ``name``, if set."""
    return _env_number(name, int, "an integer")


def env_float(name: str) -> float | None:
    """The number in variable ``name``, if set."""
    return _env_number(name, float, "a number")


def _env_number(name: str, kind: Callable[[str], _N], what: str) -> _N | None:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return None
    try:
        return kind(raw)
    except ValueError:
        raise LocalModelError(f"{name} must be {what}, got {raw!r}.") from None


def open_log(path: Path) -> IO[bytes]:
    """The server's log, to append to; one that grew too large is rotated first."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with contextlib.suppress(OSError):
        if path.stat().st_size > LOG_MAX_BYTES:
            os.replace(path, path.with_suffix(".log.1"))
    return path.open("ab")


def log_tail(path: Path, offset: int, limit: int = 3000) -> str:
    """What the log got since ``offset``, its last ``limit`` characters."""
    try:
        with path.open("rb") as log:
            log.seek(offset)
            data = log.read()
    except OSError as exc:
        return f"(log unreadable: {exc})"
    text = data.decode("utf-8", "replace").strip()
    return text[-limit:] if text else "(no output)"
