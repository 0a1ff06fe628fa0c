"""Graph state, its reducers, and the narrow input and output schemas."""

from __future__ import annotations

from typing import Annotated, TypeVar

from langchain_core.messages import AnyMessage
from langgraph.graph.message import add_messages

# pydantic (LangGraph's schema export) rejects typing.TypedDict before Python 3.12.
from typing_extensions import NotRequired, TypedDict  # noqa: UP035

from langfusion.graph.schema import (
    Analysis,
    FailedModel,
    FusionResult,
    PanelResponse,
    RunUsage,
    Usage,
)

T = TypeVar("T")


def extend_or_reset(left: list[T] | None, right: list[T] | None) -> list[T]:
    """Append parallel branches' items; ``None`` clears the list for a new run on a thread."""
    if right is None:
        return []
    return [*(left or []), *right]


class FusionInput(TypedDict):
    """What a caller passes in.

    ``messages`` is the conversation: its last human message is the question,
    earlier turns are context every panel model sees. ``depth`` is the
    fusion depth the caller runs at (a service sets it from ``x-fusion-depth``).
    """

    messages: Annotated[list[AnyMessage], add_messages]
    depth: NotRequired[int]


class FusionOutput(TypedDict):
    """What a caller gets back: the SPEC result and the synthesised answer."""

    result: FusionResult
    answer: str


class FusionState(TypedDict):
    """Everything the nodes share while a fusion runs."""

    messages: Annotated[list[AnyMessage], add_messages]
    depth: NotRequired[int]
    fusion_id: NotRequired[str]
    responses: NotRequired[Annotated[list[PanelResponse], extend_or_reset]]
    failed_models: NotRequired[Annotated[list[FailedModel], extend_or_reset]]
    analysis: NotRequired[Analysis | None]
    judge_failure: NotRequired[str | None]
    judge_usage: NotRequired[Usage | None]
    synthesis_usage: NotRequired[Usage | None]
    synthesis_failure: NotRequired[str | None]
    result: NotRequired[FusionResult]
    answer: NotRequired[str]
    usage: NotRequired[RunUsage]


class PanelTask(TypedDict):
    """The input of one panel branch, sent by ``fan_out``."""

    slug: str
    messages: list[AnyMessage]
    depth: int
    fusion_id: str
    settings: str
