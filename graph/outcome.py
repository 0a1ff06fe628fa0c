"""What a run comes to: the SPEC result assembled from the state."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TypeVar

from langfusion.graph.citations import merged
from langfusion.graph.schema import (
    Analysis,
    AnalysisMeta,
    Citation,
    FailedModel,
    FusionResult,
    PanelResponse,
    RunFailureReason,
    RunUsage,
    Step,
    Usage,
)
from langfusion.graph.state import FusionState, all_loaded, loaded

T = TypeVar("T", PanelResponse, FailedModel)


def run_result(state: FusionState, panel: Sequence[str], judge: str) -> FusionResult:
    """The ``ok`` result of a run that reached the judge, from its state."""
    responses = in_panel_order(all_loaded(PanelResponse, state.get("responses")), panel)
    # A reused analysis was paid for by the run that made it.
    panel_usage = Usage() if state.get("reusing") else Usage.total(r.usage for r in responses)
    judge_usage = loaded(Usage, state.get("judge_usage"))
    synthesis_usage = loaded(Usage, state.get("synthesis_usage"))
    failure_reason: RunFailureReason | None = state.get("judge_failure")
    error = None
    synthesis_failure = state.get("synthesis_failure")
    if synthesis_failure:
        # No answer is the failure a caller must not miss; the judge's, if it
        # failed too, shows as the missing analysis and is named here.
        judged = f"; the judge failed too ({failure_reason})" if failure_reason else ""
        failure_reason, error = "synthesis_failed", f"The synthesis failed: {synthesis_failure}"
        error += judged
    return FusionResult(
        status="ok",
        error=error,
        analysis=loaded(Analysis, state.get("analysis")),
        responses=responses,
        failed_models=in_panel_order(all_loaded(FailedModel, state.get("failed_models")), panel),
        failure_reason=failure_reason,
        judge_model=judge,
        judge_usage=judge_usage,
        analysis_meta=loaded(AnalysisMeta, state.get("analysis_meta")),
        citations=merged(all_loaded(Citation, state.get("citations"))),
        answer_truncated=bool(state.get("answer_truncated")) and not synthesis_failure,
        usage=RunUsage(
            panel=panel_usage,
            judge=judge_usage or Usage(),
            synthesis=synthesis_usage or Usage(),
            total=Usage.total([panel_usage, judge_usage, synthesis_usage]),
            unreported=_unreported(state, responses),
        ),
    )


def _unreported(state: FusionState, responses: list[PanelResponse]) -> list[Step]:
    """The steps with a call that answered but whose provider reported no token counts."""
    steps: list[Step] = []
    if not state.get("reusing"):
        if any(r.usage is None for r in responses):
            steps.append("panel")
        if (
            state.get("judge_usage") is None
            and state.get("judge_failure") != "judge_upstream_error"
        ):
            steps.append("judge")
    answered = state.get("answer") and not state.get("synthesis_failure")
    if answered and state.get("synthesis_usage") is None:
        steps.append("synthesis")
    return steps


def nothing_usable(failed: list[FailedModel]) -> FusionResult:
    """The error result of a run whose every panel model failed."""
    reasons = {f.failure_reason for f in failed}
    code: RunFailureReason = "all_panels_failed"
    if reasons == {"rate_limited"}:
        code = "rate_limited"
    elif reasons == {"insufficient_credits"}:
        code = "insufficient_credits"
    detail = "; ".join(f"{f.model}: {f.error}" for f in failed) or "no panel model ran"
    return FusionResult.failure(
        f"Every panel model failed, so there is nothing to compare ({detail}). "
        "Answer without the analysis, or retry with other models.",
        code,
        failed_models=failed,
    )


def too_few(
    responses: list[PanelResponse], failed: list[FailedModel], panel: int, needed: int
) -> FusionResult:
    """The error result of a run with fewer surviving answers than ``min_responses``."""
    if not responses:
        return nothing_usable(failed)
    return FusionResult.failure(
        f"Only {len(responses)} of {panel} panel models answered, fewer than "
        f"min_responses={needed}, so there is no comparison to trust. The "
        "answers that came are in responses; retry, or lower min_responses.",
        "insufficient_responses",
        failed_models=failed,
        responses=responses,
    )


def in_panel_order(items: list[T], order: Sequence[str]) -> list[T]:
    """``items`` in the order their models stand in the panel."""
    rank = {slug: index for index, slug in enumerate(order)}
    return sorted(items, key=lambda item: rank.get(item.model, len(rank)))
