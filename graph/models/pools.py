"""HTTP pools and the caches that live as long as they do.

One async client per event loop and endpoint (a connection belongs to the
loop that opened it); :func:`close_loop_pools` closes the running loop's
clients, and clients of loops that have closed are dropped. Every client
carries the redacting transport of ``graph/transport.py``.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import weakref
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from langfusion.graph.models.http import httpx
from langfusion.graph.models.transport import RedactingTransport, _RedactingSyncTransport

__all__ = [
    "BoundedCache",
    "close_loop_pools",
    "discard_cached",
    "loop_cache",
    "pooled_async_client",
    "shared_sync_client",
]

_POOL_LIMITS = httpx.Limits(max_connections=512, max_keepalive_connections=128)

K = TypeVar("K")
V = TypeVar("V")


class BoundedCache(Generic[K, V]):
    """A mapping that keeps the ``size`` most recently used entries."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._items: OrderedDict[K, V] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: K) -> V | None:
        """The entry for ``key`` (now the most recently used), or ``None``."""
        with self._lock:
            value = self._items.get(key)
            if value is not None:
                self._items.move_to_end(key)
            return value

    def setdefault(self, key: K, value: V) -> V:
        """The entry for ``key``, storing ``value`` first if there is none."""
        with self._lock:
            if key in self._items:
                self._items.move_to_end(key)
                return self._items[key]
            self._items[key] = value
            while len(self._items) > self.size:
                self._items.popitem(last=False)
            return value

    def discard(self, matches: Any) -> None:
        """Drop every entry whose key ``matches(key)`` says to drop."""
        with self._lock:
            for key in [k for k in self._items if matches(k)]:
                del self._items[key]

    def __len__(self) -> int:
        return len(self._items)


@dataclass
class _LoopResources:
    clients: dict[str, httpx.AsyncClient] = field(default_factory=dict)
    caches: dict[int, BoundedCache[Any, Any]] = field(default_factory=dict)


_loops: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _LoopResources] = (
    weakref.WeakKeyDictionary()
)
_loops_lock = threading.Lock()
_sync_clients: dict[str, httpx.Client] = {}


def _resources() -> _LoopResources | None:
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:
        return None
    with _loops_lock:
        found = _loops.get(loop)
        if found is None:
            # A loop that closed without close_loop_pools() (a caller's own
            # asyncio.run) keeps nothing of ours alive.
            for closed in [other for other in _loops if other.is_closed()]:
                del _loops[closed]
            found = _loops[loop] = _LoopResources()
        return found


def pooled_async_client(base_url: str) -> httpx.AsyncClient | None:
    """The running loop's pooled client for ``base_url`` (``None`` outside a loop)."""
    resources = _resources()
    if resources is None:
        return None
    with _loops_lock:
        client = resources.clients.get(base_url)
        if client is None:
            # Per-request deadlines come from the model's own `timeout`.
            client = httpx.AsyncClient(
                timeout=None,
                trust_env=False,
                transport=RedactingTransport(httpx.AsyncHTTPTransport(limits=_POOL_LIMITS)),
            )
            resources.clients[base_url] = client
        return client


def shared_sync_client(base_url: str) -> httpx.Client:
    """One sync client per endpoint, shared by every model built for it.

    Without it each chat model builds its own (an SSL context, about 0.8 MB
    of memory), because a ``Timeout`` cannot key the SDK's client cache.
    """
    with _loops_lock:
        client = _sync_clients.get(base_url)
        if client is None:
            client = httpx.Client(
                timeout=None,
                trust_env=False,
                transport=_RedactingSyncTransport(httpx.HTTPTransport(limits=_POOL_LIMITS)),
            )
            _sync_clients[base_url] = client
        return client


def loop_cache(owner: object, size: int) -> BoundedCache[Any, Any] | None:
    """A cache that lives as long as the running loop's pools (``None`` outside a loop).

    Chat models built on a loop's pooled clients are cached here, so they go
    when the pools go.
    """
    resources = _resources()
    if resources is None:
        return None
    with _loops_lock:
        return resources.caches.setdefault(id(owner), BoundedCache(size))


async def close_loop_pools() -> None:
    """Close the running loop's HTTP pools and forget the models built on them.

    Call it before a loop ends (``tools/_sync.py`` does, for every sync call):
    otherwise its open connections stay until the garbage collector finds them.
    """
    loop = asyncio.get_running_loop()
    with _loops_lock:
        resources = _loops.pop(loop, None)
    if resources is None:
        return
    for client in resources.clients.values():
        with contextlib.suppress(Exception):
            await client.aclose()


def discard_cached(owner: object, matches: Any) -> None:
    """Drop ``owner``'s loop-cached entries whose key ``matches(key)``, on every loop."""
    with _loops_lock:
        caches = [r.caches.get(id(owner)) for r in _loops.values()]
    for cache in caches:
        if cache is not None:
            cache.discard(matches)
