"""One panel call's messages, and what its reply says about itself (a refusal)."""

from __future__ import annotations

from collections.abc import Sequence

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AnyMessage, BaseMessage, SystemMessage

from langfusion.graph.errors import RefusedError
from langfusion.graph.models import ModelTraits
from langfusion.graph.prompts import (
    PANEL_INSTRUCTIONS,
    PANEL_SYSTEM,
    PANEL_TOOLS_NOTE,
)

_MAX_REFUSAL_CHARS = 200


def plain_prompts(model: BaseChatModel) -> bool:
    """Whether ``model`` is a small base model that gets plain text instead of tagged prompts."""
    return ModelTraits.of(model).plain_prompts


def panel_messages(
    messages: Sequence[AnyMessage], asked: str | None, *, tools: bool, plain: bool = False
) -> list[BaseMessage]:
    """What a panel model is sent: one system prompt, with the asker's instructions, then the turns.

    Args:
        messages: The conversation up to the question, without its system messages.
        asked: The asker's instructions (its system messages), if any.
        tools: Whether the call may use web tools (their results are untrusted).
        plain: For a small base model: no panel prompt of ours (it would
            continue it into its answer), only the asker's own instructions.
    """
    parts = [] if plain else [PANEL_SYSTEM]
    if tools and not plain:
        parts.append(PANEL_TOOLS_NOTE)
    if asked:
        parts.append(asked if plain else PANEL_INSTRUCTIONS.format(instructions=asked))
    system = [SystemMessage("\n\n".join(parts))] if parts else []
    return [*system, *messages]


def check_not_refused(message: BaseMessage) -> None:
    """Raise ``RefusedError`` when the provider marked ``message`` as a refusal.

    A ``refusal`` field, or ``finish_reason: "content_filter"`` (whatever
    text came before the filter stopped it).
    """
    refusal = message.additional_kwargs.get("refusal")
    if isinstance(refusal, str) and refusal.strip():
        text = " ".join(refusal.split())[:_MAX_REFUSAL_CHARS]
        raise RefusedError(f"the model refused to answer: {text}")
    if message.response_metadata.get("finish_reason") == "content_filter":
        raise RefusedError("the provider's content filter stopped the answer")
