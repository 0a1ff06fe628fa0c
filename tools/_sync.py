"""Running the async pipeline from synchronous callers."""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import queue
import threading
from collections.abc import AsyncIterator, Callable, Coroutine, Generator
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

T = TypeVar("T")


async def _closing_pools(work: Coroutine[Any, Any, T]) -> T:
    """Run ``work``, then close the HTTP pools it opened on this (private, ending) loop."""
    from langfusion.graph.models import close_loop_pools

    try:
        return await work
    finally:
        await close_loop_pools()


def run_sync(make: Callable[[], Coroutine[Any, Any, T]]) -> T:
    """Run a coroutine to completion from sync code, even under a running event loop.

    The pipeline's nodes are async (per-call deadlines need cancellation), so
    sync entry points drive them on a private loop. Under a running loop that
    loop lives on a worker thread; either way the caller's context variables
    (the fusion depth among them) travel along.
    """
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(_closing_pools(make()))
    context = contextvars.copy_context()
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="langfusion") as pool:
        return pool.submit(context.run, asyncio.run, _closing_pools(make())).result()


_DONE = object()


def iterate_sync(make: Callable[[], AsyncIterator[T]]) -> Generator[T, None, None]:
    """Drive an async iterator on a worker thread and yield its items as they come.

    Closing the returned iterator early (a ``break`` out of a ``for`` loop)
    cancels the async side and waits for it to unwind: its model calls are
    cancelled, their connections closed, and no thread is left behind.
    """
    items: queue.Queue[Any] = queue.Queue()
    context = contextvars.copy_context()
    started, finished = threading.Event(), threading.Event()
    running: list[asyncio.Task[Any]] = []

    async def pump() -> None:
        running.extend(filter(None, [asyncio.current_task()]))
        started.set()
        try:
            async for item in make():
                items.put(item)
        except BaseException as exc:  # noqa: BLE001 - handed to the consuming thread
            items.put(_Failure(exc))
        finally:
            finished.set()
            items.put(_DONE)

    thread = threading.Thread(
        target=context.run,
        args=(asyncio.run, _closing_pools(pump())),
        name="langfusion-stream",
        daemon=True,
    )
    thread.start()
    try:
        while (item := items.get()) is not _DONE:
            if isinstance(item, _Failure):
                raise item.error
            yield item
    finally:
        if thread.is_alive():
            started.wait()
            for task in running:
                _cancel_unless_finished(task, finished)
        thread.join()


def _cancel_unless_finished(task: asyncio.Task[Any], finished: threading.Event) -> None:
    """Cancel ``task`` from another thread, unless it has finished iterating by then.

    Checked on the task's own loop: a run that finished is closing its pools,
    which must not be cut short.
    """

    def cancel() -> None:
        if not finished.is_set():
            task.cancel()

    # The loop may close while this is being asked.
    with contextlib.suppress(RuntimeError):
        task.get_loop().call_soon_threadsafe(cancel)


class _Failure:
    def __init__(self, error: BaseException) -> None:
        self.error = error
