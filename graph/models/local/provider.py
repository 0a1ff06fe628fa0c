"""The chat model for a ``local/...`` slug, served by the embedded llama.cpp server."""

from __future__ import annotations

from typing import Any

from langchain_core.language_models import BaseChatModel
from langchain_openai import ChatOpenAI

from langfusion.graph.models.local.catalog import embedded_model
from langfusion.graph.models.local.server import local_server
from langfusion.graph.models.pools import pooled_async_client

_LOCAL_TEMPERATURES = (0.3, 0.5, 0.7, 0.4, 0.6, 0.8, 0.35, 0.55)
_LOCAL_DEFAULT_MAX_TOKENS = 256


def local_chat_model(slug: str, settings: dict[str, Any]) -> BaseChatModel:
    """Build the chat model for ``slug``, starting the shared local server if needed.

    Args:
        slug: ``local/<name>``, optionally ``#<n>`` for the n-th panel sample
            (its own default temperature and seed).
        settings: The call settings of :class:`~langfusion.graph.models.registry.ModelFactory`.

    Returns:
        A ``ChatOpenAI`` on the local server, with the metadata the judge reads.

    Raises:
        LocalModelError: If ``slug`` names no embedded model or the server cannot be started.
    """
    model = embedded_model(slug)
    sample = slug.partition("#")[2]
    index = int(sample) if sample.isdigit() else 0
    role = settings.get("role")
    temperature = settings.get("temperature")
    if temperature is None:
        temperature = 0.0 if role == "judge" else _LOCAL_TEMPERATURES[index % 8]
    max_tokens = settings.get("max_tokens") or (
        768 if role == "judge" else _LOCAL_DEFAULT_MAX_TOKENS
    )
    base_url = local_server().ensure_started(slug)
    return ChatOpenAI(
        # The server knows each model by its slug; the sample's number only sets
        # its temperature and seed.
        model=model.slug,
        base_url=base_url,
        http_async_client=pooled_async_client(base_url),
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
            **({"logit_bias": model.logit_bias} if model.logit_bias else {}),
        },
        stop_sequences=None if role == "judge" or not model.stop else list(model.stop),
        stream_usage=True,
        stream_chunk_timeout=None,  # the call's deadline bounds a stall (graph/models/registry.py)
        disable_streaming=role != "synthesis" and not settings.get("stream"),
        metadata=model.traits.as_metadata(),
    )
