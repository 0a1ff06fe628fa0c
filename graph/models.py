"""The one place a model slug becomes a chat model."""

from __future__ import annotations

import asyncio
import os
import threading
import time
import weakref
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import openai
from langchain_core.language_models import BaseChatModel
from langchain_openai import ChatOpenAI

from langfusion.graph.context import API_KEY_ENV
from langfusion.graph.errors import MissingAPIKeyError, redact, retry_after_s

# The pool, transport and timeouts handed to the OpenAI SDK come from the httpx
# it runs on (httpx2 from openai 3). An httpx 0.x client handed to it pools on
# httpcore 1, whose cost per request grows with connections x waiting requests:
# 4x less throughput at 100 fusions in flight (benchmarks/concurrency.py).
if TYPE_CHECKING:
    import httpx
elif int(openai.__version__.split(".", 1)[0]) >= 3:
    import httpx2 as httpx
else:
    import httpx

OPENROUTER_BASE_URL = "https://openrouter.ai/api/v1"
BASE_URL_ENV = "OPENROUTER_BASE_URL"
DEPTH_HEADER = "x-fusion-depth"
LOCAL_PREFIX = "local/"

# Chat-model metadata keys the judge reads: which structured-output method a
# model takes, and whether its schema needs length caps (small local models
# otherwise run lists on until they hit max_tokens).
STRUCTURED_METHOD_KEY = "langfusion_structured_method"
SCHEMA_CAPS_KEY = "langfusion_schema_caps"
# Set to False on models that cannot use tools (the web tools are not offered).
TOOLS_KEY = "langfusion_tools"

# One pool per event loop and endpoint: an async HTTP connection belongs to the
# loop that opened it, and sync callers may run each call on a fresh loop.
_POOL_LIMITS = httpx.Limits(max_connections=512, max_keepalive_connections=128)
_CONNECT_TIMEOUT_S = 10.0
_clients: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[str, httpx.AsyncClient]] = (
    weakref.WeakKeyDictionary()
)
_clients_lock = threading.Lock()


# The deadline of the model call running in this context (a monotonic time).
# The client retries 429/5xx itself; the transport tells it not to when the
# wait an endpoint asks for would outlast the call.
_CALL_DEADLINE: ContextVar[float | None] = ContextVar("langfusion_call_deadline", default=None)
# Whether panel calls made in this context stream their tokens into the graph's
# "messages" stream (the playground shows them live). Off, a panel call is one
# whole reply: the cheaper path every other caller takes.
PANEL_TOKENS: ContextVar[bool] = ContextVar("langfusion_panel_tokens", default=False)
_RETRYABLE = frozenset({408, 409, 429})
_MAX_RETRIES = 2
_SettingsKey = tuple[tuple[str, Any], ...]


@asynccontextmanager
async def call_deadline(seconds: float) -> AsyncIterator[None]:
    """Bound the model calls made in this block, retries and their waits included.

    Raises:
        TimeoutError: When the block runs past ``seconds``.
    """
    token = _CALL_DEADLINE.set(time.monotonic() + seconds)
    try:
        async with asyncio.timeout(seconds):
            yield
    finally:
        _CALL_DEADLINE.reset(token)


class _RedactingTransport(httpx.AsyncBaseTransport):
    """Scrubs credentials that an upstream quotes back in an error body.

    The ``openai`` client puts the body of an error response into the
    exception message, and from there it reaches logs, results and LangSmith
    traces (the chat model's run records the error). Redacting it here, before
    any exception exists, keeps a key that a provider echoes out of all of them.
    """

    def __init__(self, inner: httpx.AsyncBaseTransport) -> None:
        self._inner = inner

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        response = await self._inner.handle_async_request(request)
        if response.status_code < 400:
            return response
        headers = [
            (k, v)
            for k, v in response.headers.multi_items()
            if k not in ("content-encoding", "content-length", "transfer-encoding")
        ]
        if _wait_outlasts_deadline(response):
            headers.append(("x-should-retry", "false"))
        try:
            body = await response.aread()
        finally:
            await response.aclose()
        # aread() decoded any Content-Encoding, and the length changes.
        return httpx.Response(
            response.status_code,
            headers=headers,
            content=redact(body.decode("utf-8", errors="replace")).encode(),
            extensions=response.extensions,
            request=request,
        )

    async def aclose(self) -> None:
        await self._inner.aclose()


def _wait_outlasts_deadline(response: httpx.Response) -> bool:
    deadline = _CALL_DEADLINE.get()
    status = response.status_code
    if deadline is None or not (status in _RETRYABLE or status >= 500):
        return False
    wait = retry_after_s(response)
    return wait is not None and wait > deadline - time.monotonic()


def _async_client(base_url: str) -> httpx.AsyncClient | None:
    """The pooled async client of the running loop for ``base_url`` (``None`` outside a loop)."""
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:
        return None
    with _clients_lock:
        pools = _clients.setdefault(loop, {})
        client = pools.get(base_url)
        if client is None:
            # Per-request deadlines come from the model's own `timeout`.
            client = httpx.AsyncClient(
                timeout=None,
                trust_env=False,
                transport=_RedactingTransport(httpx.AsyncHTTPTransport(limits=_POOL_LIMITS)),
            )
            pools[base_url] = client
        return client


@runtime_checkable
class ModelFactory(Protocol):
    """Turns a slug and call settings into a chat model.

    Settings passed by the pipeline: ``temperature``, ``max_tokens``,
    ``reasoning``, ``timeout`` (seconds), ``headers`` (extra HTTP headers,
    ``x-fusion-depth`` among them), ``role`` (``panel``, ``judge`` or
    ``synthesis``) and, on panel calls whose tokens are shown live
    (``PANEL_TOKENS``), ``stream=True``. A factory ignores the settings it
    has no use for.
    """

    def __call__(self, slug: str, /, **settings: Any) -> BaseChatModel:
        """Build (or return a cached) chat model for ``slug``."""
        ...


@dataclass(frozen=True)
class _Endpoint:
    base_url: str
    api_key_env: str | None
    model_name: str | None


class ModelRegistry:
    """The default model factory.

    Every slug goes to an OpenAI-compatible endpoint through ``ChatOpenAI``:
    ``local/...`` to the embedded llama.cpp server, anything registered to
    its registered target, the rest to OpenRouter (``OPENROUTER_BASE_URL``,
    key from ``OPENROUTER_API_KEY``). Built models are cached per slug and
    settings, so their HTTP connection pools are shared across runs.

    Args:
        base_url: Endpoint for unregistered slugs; defaults to
            ``OPENROUTER_BASE_URL`` or OpenRouter's API.
        api_key_env: Variable holding the key for that endpoint.
    """

    def __init__(self, *, base_url: str | None = None, api_key_env: str = API_KEY_ENV) -> None:
        self._base_url = base_url
        self._api_key_env = api_key_env
        self._ready: dict[str, BaseChatModel] = {}
        self._endpoints: dict[str, _Endpoint] = {}
        self._sync_cache: dict[tuple[str, _SettingsKey], BaseChatModel] = {}
        self._loop_cache: weakref.WeakKeyDictionary[
            asyncio.AbstractEventLoop, dict[tuple[str, _SettingsKey], BaseChatModel]
        ] = weakref.WeakKeyDictionary()
        self._lock = threading.Lock()

    def register(
        self,
        slug: str,
        target: BaseChatModel | str,
        *,
        api_key_env: str | None = None,
        model_name: str | None = None,
    ) -> None:
        """Serve ``slug`` by a ready chat model or by another OpenAI-compatible base URL.

        Args:
            slug: The name the panel, judge or synthesis refers to.
            target: A chat model (used as it is, with its own headers and
                settings) or a base URL such as ``http://127.0.0.1:8000/v1``.
            api_key_env: For a base URL, the variable holding its key
                (``None``: the endpoint needs none).
            model_name: For a base URL, the model name to send (default: ``slug``).
        """
        if not slug or not isinstance(slug, str):
            raise ValueError("register() needs a non-empty slug.")
        with self._lock:
            for cache in (self._sync_cache, *self._loop_cache.values()):
                for key in [k for k in cache if k[0] == slug]:
                    del cache[key]
            if isinstance(target, BaseChatModel):
                self._ready[slug] = target
                self._endpoints.pop(slug, None)
            elif isinstance(target, str) and target.startswith(("http://", "https://")):
                self._endpoints[slug] = _Endpoint(target.rstrip("/"), api_key_env, model_name)
                self._ready.pop(slug, None)
            else:
                raise ValueError(
                    f"register({slug!r}, ...) needs a chat model or an http(s) base URL; "
                    f"got {type(target).__name__}."
                )

    def __call__(self, slug: str, /, **settings: Any) -> BaseChatModel:
        """Build or reuse the chat model for ``slug`` with ``settings``."""
        if slug in self._ready:
            return self._ready[slug]
        key = (slug, _settings_key(settings))
        cache = self._cache_of_this_loop()
        model = cache.get(key)
        if model is None:
            model = self._build(slug, settings)
            with self._lock:
                model = cache.setdefault(key, model)
        return model

    def _cache_of_this_loop(self) -> dict[tuple[str, _SettingsKey], BaseChatModel]:
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return self._sync_cache
        with self._lock:
            return self._loop_cache.setdefault(loop, {})

    def check_key(self, slug: str) -> None:
        """Raise ``MissingAPIKeyError`` if ``slug`` needs a key that is not set."""
        if slug in self._ready or slug.startswith(LOCAL_PREFIX):
            return
        endpoint = self._endpoints.get(slug)
        env = endpoint.api_key_env if endpoint else self._api_key_env
        if env and not os.environ.get(env):
            raise MissingAPIKeyError(env, slug)

    def _build(self, slug: str, settings: dict[str, Any]) -> BaseChatModel:
        if slug.startswith(LOCAL_PREFIX):
            from langfusion.graph.local import local_chat_model

            return local_chat_model(slug, settings)
        self.check_key(slug)
        endpoint = self._endpoints.get(slug)
        base_url = (
            endpoint.base_url
            if endpoint
            else self._base_url or os.environ.get(BASE_URL_ENV) or OPENROUTER_BASE_URL
        )
        env = endpoint.api_key_env if endpoint else self._api_key_env
        api_key = os.environ.get(env, "") if env else "unused"
        headers = dict(settings.get("headers") or {})
        extra_body: dict[str, Any] = {}
        reasoning = settings.get("reasoning")
        kwargs: dict[str, Any] = {}
        if base_url == OPENROUTER_BASE_URL:
            headers.setdefault("X-Title", "langfusion")
            if reasoning:
                extra_body["reasoning"] = {"effort": reasoning}
        elif reasoning:
            kwargs["reasoning_effort"] = reasoning
        return ChatOpenAI(
            model=endpoint.model_name or slug if endpoint else slug,
            base_url=base_url,
            api_key=api_key,  # type: ignore[arg-type]
            temperature=settings.get("temperature"),
            max_tokens=settings.get("max_tokens"),  # type: ignore[call-arg]
            timeout=httpx.Timeout(settings.get("timeout", 120.0), connect=_CONNECT_TIMEOUT_S),
            # The client's own retries (429/5xx/connection errors, Retry-After
            # honoured) run under the node's one deadline for the call.
            max_retries=_MAX_RETRIES,
            http_async_client=_async_client(base_url),
            default_headers=headers,
            extra_body=extra_body or None,
            stream_usage=True,
            # Only the synthesis streams to the caller (and the panel, where asked to:
            # settings["stream"]); the rest need whole replies.
            disable_streaming=settings.get("role") != "synthesis" and not settings.get("stream"),
            **kwargs,
        )


def _settings_key(settings: dict[str, Any]) -> _SettingsKey:
    return tuple(
        sorted(
            (name, tuple(sorted(value.items())) if isinstance(value, dict) else value)
            for name, value in settings.items()
        )
    )


default_registry = ModelRegistry()


def register_model(
    slug: str,
    target: BaseChatModel | str,
    *,
    api_key_env: str | None = None,
    model_name: str | None = None,
) -> None:
    """Register ``slug`` on the default factory; see ``ModelRegistry.register``."""
    default_registry.register(slug, target, api_key_env=api_key_env, model_name=model_name)
