"""Supervision of the server's child process: spawn it, stop its group, and never leak it.

The child runs in its own session (one process group to stop), with the few
environment variables a process needs to run (no API key, nothing that could
override its command line). Servers registered here
stop at exit, on SIGTERM and on Ctrl-C; on Linux the child also gets SIGTERM
when its parent dies outright (``PR_SET_PDEATHSIG``).
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import ctypes.util
import os
import queue
import re
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Callable
from concurrent.futures import Future
from types import FrameType
from typing import IO, Any

HOST = "127.0.0.1"
_STOP_GRACE_S = 5.0

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

# The stop functions of running servers; each must work without taking a lock.
_live: set[Callable[[], None]] = set()


def stop_on_exit(stop: Callable[[], None]) -> None:
    """Have ``stop`` called at exit and on SIGTERM/SIGINT (see :func:`install_exit_handlers`)."""
    _live.add(stop)


def discard_on_exit(stop: Callable[[], None]) -> None:
    """Undo :func:`stop_on_exit` for ``stop``; does nothing if it is not registered."""
    _live.discard(stop)


def _stop_all() -> None:
    for stop in list(_live):
        with contextlib.suppress(Exception):
            stop()


_exit_handlers_installed = False
_previous_handlers: dict[int, Any] = {}


def install_exit_handlers() -> None:
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


def terminate_group(proc: subprocess.Popen[bytes]) -> None:
    """Stop ``proc`` and its process group: SIGTERM, then SIGKILL after a grace period."""
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


# What the child may inherit: locale, paths, temp dirs, and the knobs of the
# libraries it runs on (threads, GPUs). Anything else (keys, tokens, a proxy
# password) stays with the parent.
_CHILD_ENV_NAMES = frozenset(
    {
        "PATH", "HOME", "USER", "LOGNAME", "LANG", "LANGUAGE", "TZ", "TMPDIR", "TEMP", "TMP",
        "SYSTEMROOT", "SYSTEMDRIVE", "WINDIR", "COMSPEC", "PATHEXT", "USERPROFILE",
        "LD_LIBRARY_PATH", "DYLD_LIBRARY_PATH", "VIRTUAL_ENV", "PYTHONPATH", "PYTHONHOME",
        "XDG_CACHE_HOME",
    }
)  # fmt: skip
_CHILD_ENV_PREFIXES = ("LC_", "OMP_", "MKL_", "OPENBLAS_", "GGML_", "CUDA_", "HIP_", "ROCR_")
_SECRET_NAME = re.compile(r"(?i)key|token|secret|passw|auth|credential")


def _child_env() -> dict[str, str]:
    env = {
        name: value
        for name, value in os.environ.items()
        if (name in _CHILD_ENV_NAMES or name.startswith(_CHILD_ENV_PREFIXES))
        and name.lower() not in _SERVER_ENV_NAMES
        and not _SECRET_NAME.search(name)
    }
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


def spawn(command: list[str], log: IO[bytes]) -> subprocess.Popen[bytes]:
    """Start the child from one long-lived thread.

    PR_SET_PDEATHSIG fires when the *thread* that forked the child exits, so a
    child started from a worker thread (an executor, ``asyncio.to_thread``) would
    die with that thread. A dedicated daemon thread lives as long as the process.

    Args:
        command: The command line to run.
        log: An open file that receives the child's stdout and stderr.

    Returns:
        The child, in a session (and process group) of its own.

    Raises:
        OSError: If the command cannot be started.
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


def free_port() -> int:
    """A port on :data:`HOST` that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        port: int = sock.getsockname()[1]
        return port
