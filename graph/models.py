"""The one place a model slug becomes a chat model."""

from __future__ import annotations

import json
import os
import threading
from dataclasses import dataclass
from typing import Any, Protocol

from langchain_core.language_models import BaseChatModel
from langchain_openai import ChatOpenAI

from langfusion.graph.context import API_KEY_ENV
from langfusion.graph.errors import MissingAPIKeyError

OPENROUTER_BASE_URL = "https://openrouter.ai/api/v1"
BASE_URL_ENV = "OPENROUTER_BASE_URL"
DEPTH_HEADER = "x-fusion-depth"
LOCAL_PREFIX = "local/"

# Chat-model metadata keys the judge reads: which structured-output method a
# model takes, and whether its schema needs length caps (small local models
# otherwise run lists on until they hit max_tokens).
STRUCTURED_METHOD_KEY = "langfusion_structured_method"
SCHEMA_CAPS_KEY = "langfusion_schema_caps"

_LOCAL_TEMPERATURES = (0.3, 0.5, 0.7, 0.4, 0.6, 0.8, 0.35, 0.55)
_LOCAL_DEFAULT_MAX_TOKENS = 256


class ModelFactory(Protocol):
    """Turns a slug and call settings into a chat model.

    Settings passed by the pipeline: ``temperature``, ``max_tokens``,
    ``reasoning``, ``timeout`` (seconds), ``headers`` (extra HTTP headers,
    ``x-fusion-depth`` among them) and ``role`` (``panel``, ``judge`` or
    ``synthesis``). A factory ignores the settings it has no use for.
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
        self._cache: dict[tuple[str, str], BaseChatModel] = {}
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
            self._cache = {k: v for k, v in self._cache.items() if k[0] != slug}
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
        key = (slug, json.dumps(settings, sort_keys=True, default=str))
        model = self._cache.get(key)
        if model is None:
            model = self._build(slug, settings)
            with self._lock:
                model = self._cache.setdefault(key, model)
        return model

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
            return _local_model(slug, settings)
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
            timeout=settings.get("timeout", 120.0),
            max_retries=0,
            default_headers=headers,
            extra_body=extra_body or None,
            stream_usage=True,
            **kwargs,
        )


def _local_model(slug: str, settings: dict[str, Any]) -> BaseChatModel:
    from langfusion.graph.local import local_server

    sample = slug.partition("#")[2]
    index = int(sample) if sample.isdigit() else 0
    role = settings.get("role")
    temperature = settings.get("temperature")
    if temperature is None:
        temperature = 0.0 if role == "judge" else _LOCAL_TEMPERATURES[index % 8]
    max_tokens = settings.get("max_tokens") or (
        768 if role == "judge" else _LOCAL_DEFAULT_MAX_TOKENS
    )
    return ChatOpenAI(
        model=slug,
        base_url=local_server().ensure_started(),
        api_key="local",  # type: ignore[arg-type]
        temperature=temperature,
        timeout=settings.get("timeout", 120.0),
        max_retries=0,
        default_headers=dict(settings.get("headers") or {}),
        # This server ignores max_completion_tokens: send its own knobs.
        extra_body={
            "max_tokens": max_tokens,
            "repeat_penalty": 1.15,
            "seed": 1000 + index,
        },
        stream_usage=True,
        metadata={STRUCTURED_METHOD_KEY: "function_calling", SCHEMA_CAPS_KEY: True},
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
