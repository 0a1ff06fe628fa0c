"""The one place a model slug becomes a chat model."""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass
from typing import Any

from langchain_core.language_models import BaseChatModel
from pydantic import SecretStr

from langfusion.graph.context import API_KEY_ENV
from langfusion.graph.errors import MissingAPIKeyError
from langfusion.graph.models.http import httpx
from langfusion.graph.models.local import local_chat_model, local_server
from langfusion.graph.models.openrouter import CitingChatOpenAI
from langfusion.graph.models.pools import (
    BoundedCache,
    close_loop_pools,
    discard_cached,
    loop_cache,
    pooled_async_client,
    shared_sync_client,
)
from langfusion.graph.models.pricing import FREE, PriceList, Pricing
from langfusion.graph.models.traits import ModelTraits
from langfusion.graph.models.transport import call_deadline

__all__ = [
    "DEPTH_HEADER",
    "ModelRegistry",
    "call_deadline",
    "cancellable",
    "close_loop_pools",
    "default_registry",
    "register_model",
]

OPENROUTER_BASE_URL = "https://openrouter.ai/api/v1"
BASE_URL_ENV = "OPENROUTER_BASE_URL"
DEPTH_HEADER = "x-fusion-depth"
LOCAL_PREFIX = "local/"
OPENROUTER_MAX_COMPLETION_TOKENS = 16000


_CONNECT_TIMEOUT_S = 10.0
# Built models kept per registry (and per event loop): one per slug and
# settings, so per-request settings (a temperature) cannot grow memory
# without bound.
MODEL_CACHE_SIZE = 128

_MAX_RETRIES = 2
_SettingsKey = tuple[tuple[str, Any], ...]


@dataclass(frozen=True)
class _Endpoint:
    base_url: str
    api_key_env: str | None
    model_name: str | None
    traits: ModelTraits | None = None


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
        api_key: The key for that endpoint itself, instead of ``api_key_env``
            (kept as a ``SecretStr``; never shown, and scrubbed from whatever
            the endpoint sends back).
    """

    def __init__(
        self,
        *,
        base_url: str | None = None,
        api_key_env: str = API_KEY_ENV,
        api_key: SecretStr | None = None,
    ) -> None:
        self._base_url = base_url
        self._api_key_env = api_key_env
        self._api_key = api_key
        self._ready: dict[str, BaseChatModel] = {}
        self._endpoints: dict[str, _Endpoint] = {}
        self._prices: dict[str, Pricing] = {}
        # Shared with the copies of with_api_key: one fetch of /models per base URL.
        self._price_list = PriceList()
        self._sync_cache: BoundedCache[tuple[str, _SettingsKey], BaseChatModel] = BoundedCache(
            MODEL_CACHE_SIZE
        )
        self._lock = threading.Lock()

    def with_api_key(self, api_key: SecretStr) -> ModelRegistry:
        """A copy of this registry, its registered slugs too, with ``api_key`` for the rest."""
        copy = ModelRegistry(
            base_url=self._base_url, api_key_env=self._api_key_env, api_key=api_key
        )
        with self._lock:
            copy._ready = dict(self._ready)
            copy._endpoints = dict(self._endpoints)
            copy._prices = dict(self._prices)
            copy._price_list = self._price_list
        return copy

    def register(
        self,
        slug: str,
        target: BaseChatModel | str,
        *,
        api_key_env: str | None = None,
        model_name: str | None = None,
        traits: ModelTraits | None = None,
        pricing: Pricing | None = None,
    ) -> None:
        """Serve ``slug`` by a ready chat model or by another OpenAI-compatible base URL.

        Args:
            slug: The name the panel, judge or synthesis refers to.
            target: A chat model (used as it is, with its own headers and
                settings, but see :func:`cancellable`) or a base URL such as
                ``http://127.0.0.1:8000/v1``.
            api_key_env: For a base URL, the variable holding its key
                (``None``: the endpoint needs none).
            model_name: For a base URL, the model name to send (default: ``slug``).
            traits: What the model can do, where the defaults are wrong (a
                server that takes no tools: ``ModelTraits(takes_tools=False)``).
            pricing: What the model costs per token: its calls' ``cost`` where
                the provider reports none, and the projection of ``estimate_cost``
                and ``max_cost_usd``. ``None``: unpriced.
        """
        if not slug or not isinstance(slug, str):
            raise ValueError("register() needs a non-empty slug.")
        if pricing is not None and not isinstance(pricing, Pricing):
            raise ValueError(f"register({slug!r}, ...): pricing must be a Pricing.")
        with self._lock:
            if pricing is None:
                self._prices.pop(slug, None)
            else:
                self._prices[slug] = pricing
            self._sync_cache.discard(lambda key: key[0] == slug)
            discard_cached(self, lambda key: key[0] == slug)
            if isinstance(target, BaseChatModel):
                if traits is not None:
                    metadata = {**(target.metadata or {}), **traits.as_metadata()}
                    target = target.model_copy(update={"metadata": metadata})
                self._ready[slug] = cancellable(target)
                self._endpoints.pop(slug, None)
            elif isinstance(target, str) and target.startswith(("http://", "https://")):
                self._endpoints[slug] = _Endpoint(
                    target.rstrip("/"), api_key_env, model_name, traits
                )
                self._ready.pop(slug, None)
            else:
                raise ValueError(
                    f"register({slug!r}, ...) needs a chat model or an http(s) base URL; "
                    f"got {type(target).__name__}."
                )

    def __call__(self, slug: str, /, **settings: Any) -> BaseChatModel:
        """Build or reuse the chat model for ``slug`` with ``settings``."""
        if slug in self._ready:
            ready = self._ready[slug]
            return _at_temperature_zero(ready) if settings.get("role") == "judge" else ready
        key = (slug, _settings_key(settings))
        if slug.startswith(LOCAL_PREFIX):
            # A restarted embedded server listens on another port: a model built
            # for the one that died must not be reused.
            key = (slug, (*key[1], ("base_url", _local_base_url())))
        cache = self._cache_of_this_loop()
        model = cache.get(key)
        if model is None:
            model = cache.setdefault(key, self._build(slug, settings))
        return model

    def _cache_of_this_loop(self) -> BoundedCache[tuple[str, _SettingsKey], BaseChatModel]:
        """The cache of the running loop (its models hold its pools), else the sync one."""
        cache = loop_cache(self, MODEL_CACHE_SIZE)
        return self._sync_cache if cache is None else cache

    def ensure_available(self, slug: str) -> None:
        """Make ``slug`` ready to serve, blocking if it must; the graph calls it off the loop.

        For ``local/...`` this starts (or restarts) the embedded server.

        Raises:
            MissingAPIKeyError: ``slug`` needs a key that is not set.
            ModelUnavailableError: The embedded server cannot start.
        """
        if slug in self._ready:
            return
        if slug.startswith(LOCAL_PREFIX):
            local_server().ensure_started(slug)
            return
        self.check_key(slug)

    def may_block(self, slug: str) -> bool:
        """Whether ``ensure_available(slug)`` may block: only the embedded server starts up.

        For every other slug readying is a key check, which the graph then
        does on the event loop instead of with a thread hop per run.
        """
        return slug.startswith(LOCAL_PREFIX) and slug not in self._ready

    def check_key(self, slug: str) -> None:
        """Raise ``MissingAPIKeyError`` if ``slug`` needs a key that is not set."""
        if slug in self._ready or slug.startswith(LOCAL_PREFIX):
            return
        endpoint = self._endpoints.get(slug)
        if endpoint is None and self._api_key is not None:
            return
        env = endpoint.api_key_env if endpoint else self._api_key_env
        if env and not os.environ.get(env):
            raise MissingAPIKeyError(env, slug)

    async def price_of(self, slug: str) -> Pricing | None:
        """What ``slug`` costs per token; ``None`` when no price is known.

        Its registered price; nothing for the embedded model; else its default
        endpoint's ``/models`` price (one fetch per registry and hour).
        """
        given = self._prices.get(slug)
        if given is not None:
            return given
        if slug.startswith(LOCAL_PREFIX):
            return FREE
        if slug in self._ready or slug in self._endpoints:
            return None
        return await self._price_list.price_of(self._default_base_url(), slug)

    def completion_cap(self, slug: str, *, role: str, requested: int | None) -> int | None:
        """The cap a ``role`` call of ``slug`` is sent, given the run's ``requested`` one.

        A ready model keeps its own (the synthesis's bound ``max_tokens``
        aside); OpenRouter's slugs get its 16000 on panel and judge calls.
        """
        ready = self._ready.get(slug)
        if ready is not None and not (role == "synthesis" and requested):
            own = getattr(ready, "max_tokens", None)
            return own if isinstance(own, int) and not isinstance(own, bool) else None
        if requested is not None:
            return requested
        openrouter = slug not in self._endpoints and not slug.startswith(LOCAL_PREFIX)
        if openrouter and self._base_url is None and role in ("panel", "judge"):
            return OPENROUTER_MAX_COMPLETION_TOKENS
        return None

    def _default_base_url(self) -> str:
        return self._base_url or os.environ.get(BASE_URL_ENV) or OPENROUTER_BASE_URL

    def _build(self, slug: str, settings: dict[str, Any]) -> BaseChatModel:
        if slug.startswith(LOCAL_PREFIX):
            return local_chat_model(slug, settings)
        self.check_key(slug)
        endpoint = self._endpoints.get(slug)
        base_url = endpoint.base_url if endpoint else self._default_base_url()
        env = endpoint.api_key_env if endpoint else self._api_key_env
        api_key = SecretStr(os.environ.get(env, "") if env else "unused")
        if endpoint is None and self._api_key is not None:
            api_key = self._api_key
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
        max_tokens = settings.get("max_tokens")
        if endpoint is None and self._base_url is None:
            # The endpoint the OpenRouter key is for: its own web tools run there,
            # and its Fusion caps each panel and judge completion at 16000 tokens.
            kwargs["metadata"] = ModelTraits(server_tools=True).as_metadata()
            if max_tokens is None and settings.get("role") in ("panel", "judge"):
                max_tokens = OPENROUTER_MAX_COMPLETION_TOKENS
        elif endpoint is not None and endpoint.traits is not None:
            kwargs["metadata"] = endpoint.traits.as_metadata()
        return CitingChatOpenAI(
            model=endpoint.model_name or slug if endpoint else slug,
            base_url=base_url,
            api_key=api_key,
            temperature=settings.get("temperature"),
            max_tokens=max_tokens,  # type: ignore[call-arg]
            timeout=httpx.Timeout(settings.get("timeout", 120.0), connect=_CONNECT_TIMEOUT_S),
            # The client's own retries (429/5xx/connection errors, Retry-After
            # honoured) run under the node's one deadline for the call.
            max_retries=settings.get("max_retries", _MAX_RETRIES),
            http_async_client=pooled_async_client(base_url),
            http_client=shared_sync_client(base_url),
            default_headers=headers,
            extra_body=extra_body or None,
            stream_usage=True,
            # The call's deadline bounds a stalled stream. The client's own per-chunk
            # timeout reads each chunk in a task of its own, where a cancel can leave
            # the connection open.
            stream_chunk_timeout=None,
            # Only the synthesis streams to the caller (and the panel, where asked to:
            # settings["stream"]); the rest need whole replies.
            disable_streaming=settings.get("role") != "synthesis" and not settings.get("stream"),
            **kwargs,
        )


def _local_base_url() -> str | None:
    return local_server().base_url


def _at_temperature_zero(model: BaseChatModel) -> BaseChatModel:
    """``model`` as the judge: at temperature 0, whatever it was registered with.

    A shallow copy keeps the model's own headers, clients and other settings.
    A model without a ``temperature`` field is used as it is.
    """
    if "temperature" not in type(model).model_fields:
        return model
    return model.model_copy(update={"temperature": 0.0})


def cancellable(model: BaseChatModel) -> BaseChatModel:
    """``model`` with langchain-openai's per-chunk stream timeout off (a shallow copy).

    That timeout reads each chunk in a task of its own, and a cancel of the call
    (a closed stream, a stopped run) then leaves the read going until the
    call's deadline; the deadline bounds a stalled stream anyway.
    """
    if getattr(model, "stream_chunk_timeout", None) is None:
        return model
    return model.model_copy(update={"stream_chunk_timeout": None})


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
    traits: ModelTraits | None = None,
    pricing: Pricing | None = None,
) -> None:
    """Register ``slug`` on the default factory; see ``ModelRegistry.register``."""
    default_registry.register(
        slug, target, api_key_env=api_key_env, model_name=model_name, traits=traits, pricing=pricing
    )
