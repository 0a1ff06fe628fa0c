"""The chat model for a ``local/...`` slug, served by the embedded llama.cpp server."""

from __future__ import annotations

from typing import Any

from langchain_core.language_models import BaseChatModel
from langchain_openai import ChatOpenAI

from langfusion.graph.models.local.server import local_server
from langfusion.graph.models.pools import pooled_async_client
from langfusion.graph.models.traits import ModelTraits

_LOCAL_TEMPERATURES = (0.3, 0.5, 0.7, 0.4, 0.6, 0.8, 0.35, 0.55)
_LOCAL_DEFAULT_MAX_TOKENS = 256
# A base model that runs on past its answer writes the template's next turn:
# free text stops there. (Not the judge: its grammar keeps it to JSON, where
# these words may sit inside a string.)
_TURN_LABELS = ["Question:", "Answer:"]
# Gemma's control tokens (pad, bos, unk, mask, [multimodal], start/end of turn,
# start/end of image) come out as literal text such as "<start_of_image>".
_CONTROL_TOKENS = {str(token): -100 for token in (0, 2, 3, 4, 5, 105, 106, 255999, 256000)}


def local_chat_model(slug: str, settings: dict[str, Any]) -> BaseChatModel:
    """Build the chat model for ``slug``, starting the shared local server if needed.

    Args:
        slug: ``local/<name>``, optionally ``#<n>`` for the n-th panel sample
            (its own default temperature and seed).
        settings: The call settings of :class:`~langfusion.graph.models.registry.ModelFactory`.

    Returns:
        A ``ChatOpenAI`` on the local server, with the metadata the judge reads.

    Raises:
        LocalModelError: If the server cannot be started.
    """
    sample = slug.partition("#")[2]
    index = int(sample) if sample.isdigit() else 0
    role = settings.get("role")
    temperature = settings.get("temperature")
    if temperature is None:
        temperature = 0.0 if role == "judge" else _LOCAL_TEMPERATURES[index % 8]
    max_tokens = settings.get("max_tokens") or (
        768 if role == "judge" else _LOCAL_DEFAULT_MAX_TOKENS
    )
    base_url = local_server().ensure_started()
    return ChatOpenAI(
        model=slug,
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
            "logit_bias": _CONTROL_TOKENS,
        },
        stop_sequences=None if role == "judge" else _TURN_LABELS,
        stream_usage=True,
        stream_chunk_timeout=None,  # the call's deadline bounds a stall (graph/models/registry.py)
        disable_streaming=role != "synthesis" and not settings.get("stream"),
        # A 270M base model cannot drive web tools; their schemas would only
        # crowd its small context.
        # A base model continues its prompt: tags and instructions would
        # come back in its answers.
        metadata=ModelTraits(
            structured_method="function_calling",
            schema_caps=True,
            takes_tools=False,
            plain_prompts=True,
        ).as_metadata(),
    )
