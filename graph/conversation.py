"""Reading the conversation a fusion was given: the question, the history, message text."""

from __future__ import annotations

from collections.abc import Sequence

from langchain_core.messages import AnyMessage, BaseMessage, HumanMessage, SystemMessage


def message_text(message: BaseMessage) -> str:
    """The text of ``message``, whatever shape its content has."""
    return message.text if isinstance(message.text, str) else str(message.content)


def question(messages: Sequence[AnyMessage]) -> str | None:
    """The last human message's text: what the panel deliberates on (``None`` if empty)."""
    for message in reversed(messages):
        if isinstance(message, HumanMessage):
            return message_text(message).strip() or None
    return None


def conversation(messages: Sequence[AnyMessage]) -> list[AnyMessage]:
    """The conversation up to and including its last human message."""
    for index in range(len(messages) - 1, -1, -1):
        if isinstance(messages[index], HumanMessage):
            return [m for m in messages[: index + 1] if not isinstance(m, SystemMessage)]
    return []


def history(messages: Sequence[AnyMessage]) -> list[AnyMessage]:
    """Earlier turns, before the last human message."""
    return conversation(messages)[:-1]
