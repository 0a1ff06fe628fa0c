"""What a run spent: its calls priced where the provider reported no cost, and told to LangSmith.

A call's ``cost`` comes from its provider where it reported one
(``cost_source: "provider"``); else, where the model factory knows the
slug's price (``PricesModels``), from its tokens at that price
(``"price_table"``). The report step prices the whole result at once, so a
price list is read only when some call needs it.
"""

from __future__ import annotations

from typing import Any

from langsmith.run_helpers import get_current_run_tree

from langfusion.graph.models import ModelFactory, PricesModels
from langfusion.graph.schema import FusionResult, Usage

__all__ = ["priced", "trace_cost", "traced"]


async def priced(
    factory: ModelFactory, result: FusionResult, *, synthesizer: str, reused: bool
) -> FusionResult:
    """``result`` with a ``price_table`` cost on every usage whose provider reported none.

    A reused analysis was paid for by the run that made it: its answers are
    left as they are. A free model (the embedded one) gets no cost either.
    """
    if not isinstance(factory, PricesModels):
        return result

    async def costed(slug: str | None, usage: Usage | None) -> Usage | None:
        if slug is None or usage is None or usage.cost is not None or not usage.total_tokens:
            return usage
        price = await factory.price_of(slug)
        if price is None or price.free:  # the embedded model's calls cost nothing to say
            return usage
        cost = round(price.cost(usage.input_tokens, usage.output_tokens), 10)
        return usage.model_copy(update={"cost": cost, "cost_source": "price_table"})

    def added(before: Usage | None, after: Usage | None) -> Usage:
        """The cost ``after`` was priced at over ``before``, as a usage of no tokens."""
        if after is None or after is before or after.cost is None:
            return Usage()
        return Usage(cost=after.cost, cost_source="price_table")

    responses = result.responses
    if not reused:
        responses = [
            r.model_copy(update={"usage": await costed(r.model, r.usage)}) for r in responses
        ]
    judge = await costed(result.judge_model, result.judge_usage)
    synthesis = await costed(synthesizer, result.usage.synthesis)
    panel_added = Usage.total(
        added(old.usage, new.usage) for old, new in zip(result.responses, responses, strict=True)
    )
    judge_added = added(result.judge_usage, judge)
    synthesis_added = added(result.usage.synthesis, synthesis)
    usage = result.usage.model_copy(
        update={
            "panel": result.usage.panel + panel_added,
            "judge": result.usage.judge + judge_added,
            "synthesis": synthesis or result.usage.synthesis,
            "total": result.usage.total + panel_added + judge_added + synthesis_added,
        }
    )
    return result.model_copy(update={"responses": responses, "judge_usage": judge, "usage": usage})


def trace_cost(result: FusionResult) -> None:
    """Put the run's cost, by step and by model, on its LangSmith run (where one is traced)."""
    usage = result.usage
    if usage.total.cost is None:
        return
    by_model: dict[str, float] = {}
    for response in result.responses:
        if response.usage is not None and response.usage.cost is not None:
            by_model[response.model] = by_model.get(response.model, 0.0) + response.usage.cost
    traced(
        {
            "fusion_cost_usd": usage.total.cost,
            "fusion_cost_source": usage.total.cost_source,
            "fusion_cost_by_step": {
                step: cost
                for step in ("panel", "judge", "synthesis")
                if (cost := getattr(usage, step).cost) is not None
            },
            "fusion_cost_by_panelist": by_model,
        }
    )


def traced(metadata: dict[str, Any]) -> None:
    """Add ``metadata`` to the LangSmith run this code runs in; nothing when none is traced."""
    run = get_current_run_tree()
    if run is not None:
        run.add_metadata(metadata)
