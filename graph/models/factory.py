"""What a model factory is: slug and settings in, chat model out, and readying a provider."""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

from langchain_core.language_models import BaseChatModel

__all__ = ["ModelFactory", "ReadiesModels"]


@runtime_checkable
class ModelFactory(Protocol):
    """Turns a slug and call settings into a chat model.

    Settings passed by the pipeline: ``temperature``, ``max_tokens``,
    ``reasoning``, ``timeout`` (seconds), ``max_retries`` (the client's own
    retries after a 429, a 5xx or a dropped connection), ``headers`` (extra HTTP headers,
    ``x-fusion-depth`` among them), ``role`` (``panel``, ``judge`` or
    ``synthesis``) and, on panel calls whose tokens are shown live
    (``FusionContext.stream_panel_tokens``), ``stream=True``. A factory ignores the settings it
    has no use for.
    """

    def __call__(self, slug: str, /, **settings: Any) -> BaseChatModel:
        """Build (or return a cached) chat model for ``slug``."""
        ...


@runtime_checkable
class ReadiesModels(Protocol):
    """A factory that can ready a slug's provider before any model is called.

    The graph calls ``ensure_available`` for every model of a run before the
    panel starts (off the event loop when ``may_block`` says it may block),
    so that a missing key or a provider that cannot start refuses the run
    before anything is paid for.
    """

    def ensure_available(self, slug: str) -> None:
        """Make ``slug`` ready to serve, or raise why it cannot be."""
        ...

    def may_block(self, slug: str) -> bool:
        """Whether ``ensure_available(slug)`` may block the calling thread."""
        ...
