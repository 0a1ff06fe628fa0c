"""What stops a run before any model is called: nesting, no question, a model that cannot serve."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from langfusion.graph.context import FusionContext
from langfusion.graph.conversation import question
from langfusion.graph.depth import Role
from langfusion.graph.errors import MissingAPIKeyError, ModelUnavailableError, classify
from langfusion.graph.schema import FusionResult
from langfusion.graph.state import FusionState

if TYPE_CHECKING:
    from langfusion.graph.nodes import Nodes


async def refusal_of(
    nodes: Nodes, ctx: FusionContext, state: FusionState, depth: int
) -> FusionResult | None:
    """The error result that refuses this run, or ``None`` when it may go on.

    Every model of the run is built (and its provider readied) here, so a
    missing key or an embedded server that cannot start ends the run first.
    """
    if depth >= 1:
        return FusionResult.failure(
            "Fusion was invoked from inside another fusion run; nested deliberation is "
            "refused. Answer without it.",
            "recursion_blocked",
        )
    if question(state["messages"]) is None:
        return FusionResult.failure(
            "There is no question to deliberate on: the last human message is missing or "
            "empty. Pass the question as a non-empty human message.",
            "invalid_request",
        )
    roles: list[tuple[str, Role]] = [(slug, "panel") for slug in ctx.panel]
    roles.append((ctx.judge, "judge"))
    if ctx.synthesize:
        roles.append((ctx.synthesizer, "synthesis"))
    try:
        ensure = getattr(nodes.factory, "ensure_available", None)
        if callable(ensure):
            slugs = list(dict.fromkeys(slug for slug, _ in roles))
            may_block = getattr(nodes.factory, "may_block", None)
            if callable(may_block) and not any(may_block(slug) for slug in slugs):
                for slug in slugs:
                    ensure(slug)
            else:
                # Readying a provider may block (the embedded server starts, and
                # hashes its model file): not on the event loop.
                await asyncio.to_thread(lambda: [ensure(slug) for slug in slugs])
        for slug, role in roles:
            nodes.model(ctx, slug, role, depth)
    except MissingAPIKeyError as exc:
        return FusionResult.failure(str(exc), "missing_api_key")
    except ModelUnavailableError as exc:
        return FusionResult.failure(str(exc), exc.reason)
    except ValueError as exc:
        return FusionResult.failure(classify(exc)[1], "invalid_request")
    return None
