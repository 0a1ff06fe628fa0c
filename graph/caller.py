"""What a chat-model caller brings to a run: synthesis tools, and an analysis to reuse.

A caller that is itself a chat model (the model alias) may bind tools or a
response format; they apply to the synthesis call only, never to the panel or
the judge. In an agent loop the caller passes the result of the run that
answered the same question (``reuse``): the run then skips the panel and the
judge and writes only the next synthesis step, with the tool results that
came back since.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from typing import Any

from langchain_core.language_models import BaseChatModel, LanguageModelInput
from langchain_core.messages import BaseMessage
from langchain_core.runnables import Runnable
from langgraph.types import Overwrite
from pydantic import TypeAdapter, ValidationError

from langfusion.graph.schema import FusionResult
from langfusion.graph.state import FusionState, SynthesisOptions, plain, plains

# Keyword arguments of `bind_tools` that travel with the tools.
_TOOL_SETTINGS = ("tool_choice", "strict", "parallel_tool_calls")


def bind_options(
    model: BaseChatModel, options: SynthesisOptions | None
) -> Runnable[LanguageModelInput, BaseMessage]:
    """``model`` with the caller's tools, response format, stop sequences and token cap bound."""
    given: Mapping[str, Any] = options or {}
    bound: Runnable[LanguageModelInput, BaseMessage] = model
    if given.get("tools"):
        settings = {k: given[k] for k in _TOOL_SETTINGS if given.get(k) is not None}
        bound = model.bind_tools(given["tools"], **settings)
    extra = {k: given[k] for k in ("response_format", "stop", "max_tokens") if given.get(k)}
    return bound.bind(**extra) if extra else bound


def take_inputs(state: FusionState) -> tuple[FusionResult | None, dict[str, Any], str | None]:
    """The run's ``reuse``, the update that consumes the caller's inputs, and what is wrong.

    What is wrong with ``reuse``, ``synthesis_options`` or ``depth`` is said in
    words (``None`` when nothing is); the run is then refused before any call.
    The inputs are cleared (a checkpointed thread keeps its keys from run to
    run) and this run's copies kept in ``reusing`` and ``synthesis_binding``.
    With a result to reuse, its analysis, answers and sources become this
    run's, for the synthesis to read.
    """
    update: dict[str, Any] = {"reuse": None, "synthesis_options": None}
    try:
        earlier = _reused(state.get("reuse"))
        options = _options(state.get("synthesis_options"))
        _depth(state.get("depth", 0))
    except ValueError as exc:
        return None, update | {"reusing": False, "synthesis_binding": None}, str(exc)
    update |= {"reusing": earlier is not None, "synthesis_binding": options}
    if earlier is not None:
        failure = earlier.failure_reason or ""
        update |= {
            "analysis": plain(earlier.analysis) if earlier.analysis else None,
            "analysis_meta": plain(earlier.analysis_meta) if earlier.analysis_meta else None,
            "judge_failure": failure if failure.startswith("judge_") else None,
            "responses": Overwrite(plains(earlier.responses)),
            "failed_models": Overwrite(plains(earlier.failed_models)),
            "citations": Overwrite(plains(earlier.citations)),
        }
    return earlier, update, None


def _reused(raw: object) -> FusionResult | None:
    """The result to reuse: a ``FusionResult``, or its JSON as a server is sent it."""
    if raw is None or isinstance(raw, FusionResult):
        return raw
    try:
        return FusionResult.model_validate(raw)
    except ValidationError as exc:
        raise ValueError(
            "reuse must be the result of an earlier run (a FusionResult or its JSON); "
            f"{_first_error(exc)}. Leave reuse out to run the whole pipeline."
        ) from None


def _options(raw: object) -> SynthesisOptions | None:
    """The synthesis options, checked key by key before any model is called."""
    if raw is None:
        return None
    try:
        return _options_adapter().validate_python(raw)
    except ValidationError as exc:
        raise ValueError(
            f"synthesis_options is not valid: {_first_error(exc)}. It takes tools (OpenAI "
            "tool dicts), tool_choice, strict, parallel_tool_calls, response_format, stop "
            "(a list of strings) and max_tokens (a positive integer)."
        ) from None


def _depth(raw: object) -> None:
    if isinstance(raw, bool) or not isinstance(raw, int) or raw < 0:
        raise ValueError(
            f"depth must be a whole number of 0 or more (0 at the top level), not {raw!r}."
        )


@functools.cache
def _options_adapter() -> TypeAdapter[SynthesisOptions]:
    return TypeAdapter(SynthesisOptions)


def _first_error(exc: ValidationError) -> str:
    error = exc.errors(include_url=False)[0]
    where = ".".join(str(part) for part in error["loc"])
    return f"{where}: {error['msg']}" if where else str(error["msg"])
