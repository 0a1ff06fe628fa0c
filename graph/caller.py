"""What a chat-model caller brings to a run: synthesis tools, and an analysis to reuse.

A caller that is itself a chat model (the model alias) may bind tools or a
response format; they apply to the synthesis call only, never to the panel or
the judge. In an agent loop the caller passes the result of the run that
answered the same question (``reuse``): the run then skips the panel and the
judge and writes only the next synthesis step, with the tool results that
came back since.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from langchain_core.language_models import BaseChatModel, LanguageModelInput
from langchain_core.messages import BaseMessage
from langchain_core.runnables import Runnable
from langgraph.types import Overwrite

from langfusion.graph.schema import FusionResult
from langfusion.graph.state import FusionState, SynthesisOptions

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


def take_inputs(state: FusionState) -> tuple[FusionResult | None, dict[str, Any]]:
    """The run's ``reuse`` and ``synthesis_options``, and the update that consumes them.

    The inputs are cleared (a checkpointed thread keeps its keys from run to
    run) and this run's copies kept in ``reusing`` and ``synthesis_binding``.
    With a result to reuse, its analysis, answers and sources become this
    run's, for the synthesis to read.
    """
    raw = state.get("reuse")
    earlier = raw if raw is None or isinstance(raw, FusionResult) else _parsed(raw)
    update: dict[str, Any] = {
        "reuse": None,
        "synthesis_options": None,
        "reusing": earlier is not None,
        "synthesis_binding": state.get("synthesis_options"),
    }
    if earlier is not None:
        failure = earlier.failure_reason or ""
        update |= {
            "analysis": earlier.analysis,
            "analysis_meta": earlier.analysis_meta,
            "judge_failure": failure if failure.startswith("judge_") else None,
            "responses": Overwrite(list(earlier.responses)),
            "failed_models": Overwrite(list(earlier.failed_models)),
            "citations": Overwrite(list(earlier.citations)),
        }
    return earlier, update


def _parsed(value: Mapping[str, Any]) -> FusionResult:
    """A result a server was sent as JSON."""
    return FusionResult.model_validate(value)
