"""What stops a run before any model is called: nesting, no question, no model, no budget."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from langchain_core.messages import AnyMessage

from langfusion.graph.context import FusionContext
from langfusion.graph.cost import aestimate_cost, budget_refusal
from langfusion.graph.errors import MissingAPIKeyError, ModelUnavailableError, classify
from langfusion.graph.models import ModelFactory, ReadiesModels
from langfusion.graph.schema import FusionResult
from langfusion.graph.spend import traced


async def refusal_of(
    factory: ModelFactory,
    ctx: FusionContext,
    question: str | None,
    depth: int,
    *,
    messages: Sequence[AnyMessage] = (),
    synthesis_max_tokens: int | None = None,
    reusing: bool = False,
) -> FusionResult | None:
    """The error result that refuses this run, or ``None`` when it may go on.

    A factory that readies its models (the registry: a key check, or the
    embedded server's start) does so here for every model of the run, so a
    missing key or an embedded server that cannot start ends the run first.
    With ``max_cost_usd``, the run's worst case is projected (``messages``,
    the caller's ``synthesis_max_tokens``, only the synthesis when
    ``reusing``) and a run it does not fit is refused as ``budget_exceeded``.
    """
    if depth >= 1:
        return FusionResult.failure(
            "Fusion was invoked from inside another fusion run; nested deliberation is "
            "refused. Answer without it.",
            "recursion_blocked",
        )
    if question is None:
        return FusionResult.failure(
            "There is no question to deliberate on: the last human message is missing or "
            "empty. Pass the question as a non-empty human message.",
            "invalid_request",
        )
    if isinstance(factory, ReadiesModels):
        slugs = list(dict.fromkeys([*ctx.panel, ctx.judge, *([ctx.synthesizer] * ctx.synthesize)]))
        try:
            if any(factory.may_block(slug) for slug in slugs):
                # Readying a provider may block (the embedded server starts, and
                # hashes its model file): not on the event loop.
                await asyncio.to_thread(_ready, factory, slugs)
            else:
                _ready(factory, slugs)
        except MissingAPIKeyError as exc:
            return FusionResult.failure(str(exc), "missing_api_key")
        except ModelUnavailableError as exc:
            return FusionResult.failure(str(exc), exc.reason)
        except ValueError as exc:
            return FusionResult.failure(classify(exc)[1], "invalid_request")
    if ctx.max_cost_usd is None:
        return None
    projection = await aestimate_cost(
        messages or question,
        ctx,
        model_factory=factory,
        synthesis_max_tokens=synthesis_max_tokens,
        reusing=reusing,
    )
    # The worst case and the budget, on the run's trace (where one is traced).
    traced(
        {"fusion_projected_cost_usd": projection.total_usd, "fusion_budget_usd": ctx.max_cost_usd}
    )
    return budget_refusal(projection, ctx.max_cost_usd)


def _ready(factory: ReadiesModels, slugs: list[str]) -> None:
    for slug in slugs:
        factory.ensure_available(slug)
