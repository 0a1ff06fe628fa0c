"""The embedded local models (SmolLM2-135M, gemma-3-270m) on a llama.cpp server on loopback.

The model factory builds ``local/...`` slugs with :func:`local_chat_model`;
the catalogue (``catalog.py``) says which packaged GGUF each name serves.
One server per process serves every run and every embedded model (the one a
request names is loaded in place of the one held); it stops when the process ends
(``atexit``, SIGTERM, Ctrl-C) and, on Linux, dies with the process that
started it even when that process is killed outright. Typical use::

    from langfusion.graph.models.local import local_server

    base_url = local_server().ensure_started()  # "http://127.0.0.1:PORT/v1"
"""

from __future__ import annotations

from typing import Any

from langchain_core.language_models import BaseChatModel

from langfusion.graph.models.local.gguf import LocalModelError
from langfusion.graph.models.local.provider import local_chat_model as build
from langfusion.graph.models.local.server import LocalModelServer, local_server

__all__ = ["LocalModelError", "LocalModelServer", "local_chat_model", "local_server"]


def local_chat_model(slug: str, settings: dict[str, Any]) -> BaseChatModel:
    """Build the chat model for a ``local/...`` slug, starting the shared server if needed.

    Args:
        slug: ``local/<name>`` (``smollm2-135m``, ``gemma-3-270m``), optionally
            ``#<n>`` for the n-th panel sample.
        settings: The call settings of :class:`~langfusion.graph.models.registry.ModelFactory`.

    Returns:
        A chat model served by the embedded llama.cpp server.

    Raises:
        LocalModelError: If no embedded model has that name, or the server cannot be started.
    """
    return build(slug, settings)
