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
    """The conversation up to and including its last human message, system messages kept."""
    for index in range(len(messages) - 1, -1, -1):
        if isinstance(messages[index], HumanMessage):
            return list(messages[: index + 1])
    return []


def instructions(messages: Sequence[AnyMessage]) -> str | None:
    """The asker's instructions: the text of every system message, ``None`` if there is none."""
    texts = [message_text(m).strip() for m in messages if isinstance(m, SystemMessage)]
    return "\n\n".join(t for t in texts if t) or None


def without_instructions(messages: Sequence[AnyMessage]) -> list[AnyMessage]:
    """``messages`` without its system messages."""
    return [m for m in messages if not isinstance(m, SystemMessage)]


def history(messages: Sequence[AnyMessage]) -> list[AnyMessage]:
    """Earlier turns, before the last human message, without the system messages."""
    return without_instructions(conversation(messages))[:-1]


def since_question(messages: Sequence[AnyMessage]) -> list[AnyMessage]:
    """What came after the last human message: an agent's tool calls and their results."""
    return without_instructions(messages[len(conversation(messages)) :])
