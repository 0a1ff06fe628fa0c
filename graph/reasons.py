"""The closed sets of failure reasons (SPEC "Failure reasons"), typed once."""

from __future__ import annotations

from typing import Literal

__all__ = ["FailureReason", "JudgeFailure", "PanelFailureReason", "RunFailureReason"]

JudgeFailure = Literal[
    "judge_not_valid_json",
    "judge_schema_mismatch",
    "judge_upstream_error",
    "judge_empty_completion",
]

# The closed sets of failure reasons (SPEC "Failure reasons"). Why one panel model
# gave no answer (``FailedModel.failure_reason``):
PanelFailureReason = Literal[
    "timeout",
    "rate_limited",
    "insufficient_credits",
    "unauthorized",
    "forbidden",
    "model_not_found",
    "invalid_request",
    "context_length_exceeded",
    "upstream_error",
    "connection_error",
    "empty_completion",
    "refused",
    "cut_after_quorum",
]
# Why a run failed, or what part of it did (``FusionResult.failure_reason``):
RunFailureReason = Literal[
    "all_panels_failed",
    "rate_limited",
    "insufficient_credits",
    "insufficient_responses",
    "missing_api_key",
    "invalid_request",
    "recursion_blocked",
    "local_model_unavailable",
    "judge_not_valid_json",
    "judge_schema_mismatch",
    "judge_upstream_error",
    "judge_empty_completion",
    "synthesis_failed",
    "budget_exceeded",
    # OpenRouter's, for the HTTP API's server tool: a second fusion call in one
    # request, a request its client left, and a failure nothing else names.
    "fusion_invocation_capped",
    "cancelled",
    "unexpected_error",
]
FailureReason = Literal[PanelFailureReason, RunFailureReason]
