"""Graph state, its reducers, and the narrow input and output schemas.

State holds LangChain messages and plain JSON data only: the panel answers,
the analysis and the result are stored as their ``model_dump(mode="json")``
and read back with :func:`loaded`. A checkpoint then holds nothing that a
serializer must be allowed to import (LangGraph's strict msgpack mode, on
every saver and on the LangGraph server), and the graph's output is the
SPEC's result JSON, the same in-process and over the LangGraph server.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Annotated, Any, TypeVar

from langchain_core.messages import AnyMessage, MessageLikeRepresentation, convert_to_messages
from langgraph.graph.message import Messages, add_messages
from pydantic import BaseModel, ConfigDict, PositiveInt, with_config

# pydantic (LangGraph's schema export) rejects typing.TypedDict before Python 3.12.
from typing_extensions import NotRequired, TypedDict  # noqa: UP035

from langfusion.graph.schema import JudgeFailure

T = TypeVar("T")
M = TypeVar("M", bound=BaseModel)
# A langfusion model as state holds it: its JSON data.
Plain = dict[str, Any]


def plain(model: BaseModel) -> Plain:
    """``model`` as state holds it."""
    return model.model_dump(mode="json")


def plains(models: Iterable[BaseModel]) -> list[Plain]:
    """Each of ``models`` as state holds it."""
    return [plain(model) for model in models]


def loaded(kind: type[M], data: object) -> M | None:
    """The ``kind`` model that state holds as ``data`` (``None`` stays ``None``)."""
    if data is None or isinstance(data, kind):
        return data
    return kind.model_validate(data)


def all_loaded(kind: type[M], items: Iterable[object] | None) -> list[M]:
    """The ``kind`` models that state holds as ``items``."""
    return [kind.model_validate(item) for item in items or []]


def extend_or_reset(left: list[T] | None, right: list[T] | None) -> list[T]:
    """Append parallel branches' items; ``None`` clears the list for a new run on a thread."""
    if right is None:
        return []
    return [*(left or []), *right]


def add_conversation(left: Messages, right: Messages) -> Messages:
    """``add_messages``, with input that is not a conversation refused in words.

    Raises:
        ValueError: ``messages`` is missing, empty, or holds something that is
            not a chat message; the message says which item and what to pass.
    """
    return add_messages(left, as_conversation(right))


_EXPECTED = (
    "pass a list of chat messages (HumanMessage, {'role': 'user', 'content': ...}, "
    "or ('human', text)) whose last human message is the question"
)


def as_conversation(value: Any) -> list[MessageLikeRepresentation]:
    """``value`` as chat messages (one message or ``(role, text)`` pair taken as a list).

    Raises:
        ValueError: ``value`` is missing, empty, or holds something that is not
            a chat message; the message says which item and what to pass.
    """
    if value is None:
        raise ValueError(f"messages is missing: {_EXPECTED}.")
    items = value if isinstance(value, list | tuple) else [value]
    if isinstance(value, tuple) and len(value) == 2 and isinstance(value[0], str):
        items = [value]  # one ("human", text) pair
    if not items:
        raise ValueError(f"messages is empty: {_EXPECTED}.")
    converted: list[MessageLikeRepresentation] = []
    for index, item in enumerate(items):
        try:
            converted.extend(convert_to_messages([item]))
        except (NotImplementedError, ValueError, TypeError, KeyError, AttributeError) as exc:
            shown = repr(item)
            shown = shown if len(shown) <= 80 else shown[:79] + "…"
            raise ValueError(
                f"messages[{index}] is not a chat message ({type(item).__name__} {shown}): "
                f"{_EXPECTED}."
            ) from exc
    return converted


@with_config(ConfigDict(extra="forbid"))
class SynthesisOptions(TypedDict, total=False):
    """What a chat-model caller binds to the synthesis call (never to the panel or judge).

    ``tools`` are OpenAI-format tool definitions, bound with ``tool_choice``,
    ``strict`` and ``parallel_tool_calls``; ``response_format``, ``stop`` and
    ``max_tokens`` (a cap on the synthesis completion) are passed to the call
    as they are.
    """

    tools: list[dict[str, Any]]
    tool_choice: str | dict[str, Any] | bool | None
    strict: bool | None
    parallel_tool_calls: bool | None
    response_format: dict[str, Any] | None
    stop: list[str] | None
    max_tokens: PositiveInt | None


class FusionInput(TypedDict):
    """What a caller passes in.

    ``messages`` is the conversation: its last human message is the question,
    earlier turns are context every panel model sees. ``depth`` is the
    fusion depth the caller runs at (a service sets it from ``x-fusion-depth``).
    ``reuse`` is the result of an earlier run on the same question (an agent
    loop whose tools answered since): the run skips the panel and the judge and
    writes only the next synthesis step. ``synthesis_options`` binds a
    caller's tools or response format to the synthesis. Both apply to this run only.
    """

    messages: Annotated[list[AnyMessage], add_conversation]
    depth: NotRequired[int]
    reuse: NotRequired[Plain | None]
    synthesis_options: NotRequired[SynthesisOptions | None]


class FusionOutput(TypedDict):
    """What a caller gets back: the SPEC result JSON and the synthesised answer.

    ``FusionResult.model_validate(out["result"])`` reads the result as a model.
    """

    result: Plain
    answer: str


class FusionState(TypedDict):
    """Everything the nodes share while a fusion runs."""

    messages: Annotated[list[AnyMessage], add_conversation]
    depth: NotRequired[int]
    reuse: NotRequired[Plain | None]
    synthesis_options: NotRequired[SynthesisOptions | None]
    # This run's copies of the two inputs above, which prepare clears so that a
    # later run on the same thread does not inherit them.
    reusing: NotRequired[bool]
    synthesis_binding: NotRequired[SynthesisOptions | None]
    fusion_id: NotRequired[str]
    # Read from the conversation once, by prepare: the last human message's
    # text, and the asker's system messages (None when there are none).
    question: NotRequired[str | None]
    instructions: NotRequired[str | None]
    # PanelResponse, FailedModel, Analysis, AnalysisMeta, Citation, Usage and
    # FusionResult data (see plain / loaded).
    responses: NotRequired[Annotated[list[Plain], extend_or_reset]]
    failed_models: NotRequired[Annotated[list[Plain], extend_or_reset]]
    analysis: NotRequired[Plain | None]
    analysis_meta: NotRequired[Plain | None]
    citations: NotRequired[Annotated[list[Plain], extend_or_reset]]
    judge_failure: NotRequired[JudgeFailure | None]
    judge_usage: NotRequired[Plain | None]
    synthesis_usage: NotRequired[Plain | None]
    synthesis_failure: NotRequired[str | None]
    answer_truncated: NotRequired[bool]
    result: NotRequired[Plain | None]
    answer: NotRequired[str]


# What prepare resets at the start of each run on a thread.
FRESH_RUN: dict[str, Any] = {
    "responses": None,
    "failed_models": None,
    "analysis": None,
    "analysis_meta": None,
    "citations": None,
    "judge_failure": None,
    "judge_usage": None,
    "synthesis_usage": None,
    "synthesis_failure": None,
    "answer_truncated": False,
    "result": None,
    "answer": "",
}


class PanelTask(TypedDict):
    """The input of one panel branch, sent by ``fan_out``."""

    slug: str
    messages: list[AnyMessage]
    instructions: str | None
    depth: int
    # This run's panel round (graph/quorum.py): the same key in every branch of the run.
    round: str
    fusion_id: str
    settings: str
