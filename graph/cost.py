"""Cost you can see before you pay: a run's worst case, and the budget it must fit.

``estimate_cost`` projects, without calling any model, what a run may cost
at worst: for every panel, judge and synthesis call, its prompt tokens plus
its completion cap, times ``max_tool_calls + 1`` rounds for a call with web
tools, at the prices the model factory knows (``PricesModels``). With
``max_cost_usd``, ``prepare`` refuses a run whose worst case is above the
budget or cannot be bounded (graph/spend.py prices the calls after a run).
"""

from __future__ import annotations

import asyncio
import json
import os
import threading
from collections.abc import Callable, Coroutine, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, cast

from langchain_core.messages import AnyMessage, BaseMessage, HumanMessage, SystemMessage

from langfusion.graph.context import FusionContext
from langfusion.graph.conversation import (
    conversation,
    history,
    instructions,
    message_text,
    question,
    since_question,
    without_instructions,
)
from langfusion.graph.judge import MAX_ANSWER_CHARS_FOR_JUDGE, Panel
from langfusion.graph.models import ModelFactory, PricesModels, Pricing, default_registry
from langfusion.graph.panel import panel_messages
from langfusion.graph.projection import CapSource, CostProjection, ProjectedCall, TokenCounting
from langfusion.graph.prompts import JUDGE_NOTES, JUDGE_SYSTEM, JUDGE_VERIFY
from langfusion.graph.schema import FusionResult, PanelResponse, Step
from langfusion.graph.synthesis_prompt import NO_ANALYSIS, synthesis_messages
from langfusion.graph.verdict import judge_schema

__all__ = ["TOKEN_COUNTING_ENV", "aestimate_cost", "budget_refusal", "estimate_cost"]

# "estimate" counts four characters a token without trying tiktoken, whose
# first use downloads its encoding.
TOKEN_COUNTING_ENV = "LANGFUSION_TOKEN_COUNTING"
# How long a projection waits for tiktoken's first load before it estimates instead.
TOKENIZER_WAIT_S = 10.0
# What a chat request adds around its messages: each message's role and
# separators, and the reply's opening.
_PER_MESSAGE = 4
_PER_REQUEST = 3
# The web tools' definitions, sent with every round that offers them.
_WEB_TOOL_DEFINITIONS = 600
# One page the panel found, listed to the synthesis.
_PER_SOURCE = 60


class _Tokenizer:
    """tiktoken's ``o200k_base``, loaded once per process (its first load downloads it)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.tried = False
        self._count: Callable[[str], int] | None = None

    def load(self) -> Callable[[str], int] | None:
        with self._lock:
            if not self.tried:
                self._count = _tiktoken_counter()
                self.tried = True
            return self._count


def _tiktoken_counter() -> Callable[[str], int] | None:
    try:
        import tiktoken

        encoding = tiktoken.get_encoding("o200k_base")
    except Exception:  # noqa: BLE001 - not installed, or its encoding cannot be had offline
        return None
    return lambda text: len(encoding.encode(text, disallowed_special=()))


_TOKENIZER = _Tokenizer()


def _estimated(text: str) -> int:
    return -(-len(text) // 4)


async def _counter() -> tuple[Callable[[str], int], TokenCounting]:
    """How prompt tokens are counted: tiktoken where it loads, else four characters a token."""
    if os.environ.get(TOKEN_COUNTING_ENV, "").strip().lower() == "estimate":
        return _estimated, "estimate"
    count = _TOKENIZER.load() if _TOKENIZER.tried else None
    if not _TOKENIZER.tried:
        try:
            load = asyncio.to_thread(_TOKENIZER.load)
            count = await asyncio.wait_for(asyncio.shield(load), TOKENIZER_WAIT_S)
        except TimeoutError:
            count = None
    return (count, "tiktoken") if count is not None else (_estimated, "estimate")


class _Projection:
    """The calls of one run, projected one by one at their prices and caps."""

    def __init__(
        self,
        factory: ModelFactory,
        prices: dict[str, Pricing | None],
        count: Callable[[str], int],
    ) -> None:
        self.factory = factory
        self.prices = prices
        self.count = count
        self.calls: list[ProjectedCall] = []

    def tokens(self, messages: Sequence[BaseMessage]) -> int:
        return _PER_REQUEST + sum(_PER_MESSAGE + self.count(message_text(m)) for m in messages)

    def cap(
        self, slug: str, role: str, requested: int | None, prompt: int
    ) -> tuple[int | None, CapSource]:
        """The most one ``role`` round of ``slug`` can write, and what says so."""
        if isinstance(self.factory, PricesModels):
            sent = self.factory.completion_cap(slug, role=role, requested=requested)
        else:
            sent = requested
        price = self.prices.get(slug)
        limit = price.max_completion_tokens if price else None
        if sent is not None:
            return (min(sent, limit) if limit else sent), "sent"
        if limit is not None:
            return limit, "model_limit"
        if price is not None and price.context_length is not None:
            return max(price.context_length - prompt, 0), "context_length"
        return None, "unknown"

    def add(
        self, step: Step, slug: str, role: str, prompt: int, requested: int | None, rounds: int
    ) -> None:
        """Project one call of ``rounds`` requests of ``prompt`` tokens each."""
        cap, source = self.cap(slug, role, requested, prompt)
        price = self.prices.get(slug)
        cost: float | None = None
        if price is not None and (cap is not None or price.completion_per_token == 0):
            cost = rounds * price.cost(prompt, cap or 0)
        self.calls.append(
            ProjectedCall(
                step=step,
                model=slug,
                rounds=rounds,
                prompt_tokens=prompt,
                completion_tokens=cap,
                cap_source=source,
                cost_usd=None if cost is None else round(cost, 10),
            )
        )

    def result(self, counting: TokenCounting) -> CostProjection:
        steps: dict[str, float] = {}
        models: dict[str, float] = {}
        unpriced: list[str] = []
        uncapped: list[str] = []
        for call in self.calls:
            if call.cost_usd is not None:
                steps[call.step] = steps.get(call.step, 0.0) + call.cost_usd
                models[call.model] = models.get(call.model, 0.0) + call.cost_usd
            elif self.prices.get(call.model) is None:
                unpriced += [call.model] if call.model not in unpriced else []
            elif call.model not in uncapped:
                uncapped.append(call.model)
        return CostProjection(
            total_usd=round(sum(steps.values()), 10),
            complete=not unpriced and not uncapped,
            steps={step: round(usd, 10) for step, usd in steps.items()},
            models={slug: round(usd, 10) for slug, usd in models.items()},
            calls=self.calls,
            unpriced=unpriced,
            uncapped=uncapped,
            token_counting=counting,
        )


async def aestimate_cost(
    question_or_messages: str | Sequence[BaseMessage],
    context: FusionContext | None = None,
    *,
    model_factory: ModelFactory | None = None,
    synthesis_max_tokens: int | None = None,
    reusing: bool = False,
) -> CostProjection:
    """What a run may cost at worst, computed without calling any model.

    Every panel call (fallbacks included), the judge (its web research too,
    unless ``judge_web_tools=False``) and the synthesis are projected at their
    prompt tokens plus their completion cap, ``max_tool_calls + 1`` rounds
    for a call with web tools; the judge's prompt holds every panel answer at
    its cap, the synthesis's the analysis at the judge's. Prices and caps come
    from the model factory (``PricesModels``: the registry reads OpenRouter's
    ``/models`` and the prices given to ``register_model``); a slug with no
    price is listed in ``unpriced``.

    Args:
        question_or_messages: The question, or the whole conversation.
        context: The run's parameters (default: ``FusionContext()``).
        model_factory: Where prices and caps come from (default: the registry).
        synthesis_max_tokens: The caller's cap on the synthesis (an alias's ``max_tokens``).
        reusing: Only the synthesis runs (an agent loop's next step).

    Returns:
        The projection; ``total_usd`` bounds the run when ``complete``.
    """
    ctx = context if context is not None else FusionContext()
    factory = model_factory or default_registry
    messages = cast(
        list[AnyMessage],
        [HumanMessage(question_or_messages)]
        if isinstance(question_or_messages, str)
        else list(question_or_messages),
    )
    asked, told = question(messages) or "", instructions(messages)
    fallbacks = [slug for slug in ctx.fallback_models or () if slug not in ctx.panel]
    panel = [*ctx.panel, *fallbacks]
    slugs = list(dict.fromkeys([*panel, ctx.judge, ctx.synthesizer]))
    prices: dict[str, Pricing | None] = dict.fromkeys(slugs)
    if isinstance(factory, PricesModels):
        found = await asyncio.gather(*(factory.price_of(slug) for slug in slugs))
        prices = dict(zip(slugs, found, strict=True))
    count, counting = await _counter()
    run = _Projection(factory, prices, count)
    web_rounds = ctx.max_tool_calls + 1
    judge_cap = run.cap(ctx.judge, "judge", ctx.max_completion_tokens, 0)[0]
    answers = [
        min(cap or MAX_ANSWER_CHARS_FOR_JUDGE, MAX_ANSWER_CHARS_FOR_JUDGE)
        for cap in (run.cap(slug, "panel", ctx.max_completion_tokens, 0)[0] for slug in panel)
    ]
    answer_bound = max(answers) * len(ctx.panel)
    if not reusing:
        prompt = run.tokens(
            panel_messages(without_instructions(conversation(messages)), told, tools=ctx.web_tools)
        )
        prompt += _WEB_TOOL_DEFINITIONS if ctx.web_tools else 0
        for slug in panel:
            run.add(
                "panel",
                slug,
                "panel",
                prompt,
                ctx.max_completion_tokens,
                web_rounds if ctx.web_tools else 1,
            )
        labels = {f"Response {chr(65 + i)}": slug for i, slug in enumerate(ctx.panel)}
        empty = Panel(labels, tuple(PanelResponse(model=s, content="") for s in ctx.panel))
        judged = [SystemMessage(JUDGE_SYSTEM), HumanMessage(empty.prompt(asked, told))]
        prompt = run.tokens(judged) + answer_bound
        # Unset, the judge researches where its endpoint runs the web tools in
        # its own call: that is not known here, so the worst case assumes it.
        if ctx.judge_web_tools is not False:
            research = prompt + count(JUDGE_VERIFY) + _WEB_TOOL_DEFINITIONS
            run.add("judge", ctx.judge, "judge", research, ctx.max_completion_tokens, web_rounds)
            prompt += _PER_MESSAGE + count(JUDGE_NOTES) + (judge_cap or 0)
        prompt += count(json.dumps(judge_schema(list(labels))))
        run.add("judge", ctx.judge, "judge", prompt, ctx.max_completion_tokens, 1)
    if ctx.synthesize:
        written = synthesis_messages(
            asked,
            told,
            history(messages),
            None,
            [PanelResponse(model=slug, content="") for slug in ctx.panel],
        )
        prompt = run.tokens([*written, *since_question(messages)]) - count(NO_ANALYSIS)
        prompt += (judge_cap or 0) + answer_bound
        if ctx.web_tools:
            prompt += _PER_SOURCE * ctx.max_tool_calls * len(ctx.panel)
        run.add("synthesis", ctx.synthesizer, "synthesis", prompt, synthesis_max_tokens, 1)
    return run.result(counting)


def estimate_cost(
    question_or_messages: str | Sequence[BaseMessage],
    context: FusionContext | None = None,
    *,
    model_factory: ModelFactory | None = None,
    synthesis_max_tokens: int | None = None,
) -> CostProjection:
    """What a run may cost at worst, without calling any model; see :func:`aestimate_cost`.

    Runs on a private event loop (on a worker thread when one is running here).
    """

    def work() -> Coroutine[Any, Any, CostProjection]:
        return aestimate_cost(
            question_or_messages,
            context,
            model_factory=model_factory,
            synthesis_max_tokens=synthesis_max_tokens,
        )

    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(work())
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="langfusion-estimate") as pool:
        return pool.submit(asyncio.run, work()).result()


def budget_refusal(projection: CostProjection, budget: float) -> FusionResult | None:
    """The ``budget_exceeded`` result for a run that ``budget`` does not allow, else ``None``.

    A projection that cannot be bounded (a slug without a price, or a priced
    call without a known cap) is refused too: a budget never runs blind.
    """
    if projection.unpriced:
        error = (
            f"max_cost_usd={budget:g} is set, but no price is known for "
            f"{', '.join(projection.unpriced)}, so the run's cost cannot be bounded; nothing "
            "was called. Register a price (register_model(slug, target, pricing=Pricing(...))) "
            "or run without a budget."
        )
    elif projection.uncapped:
        error = (
            f"max_cost_usd={budget:g} is set, but no completion cap is known for "
            f"{', '.join(projection.uncapped)}, so the run's cost cannot be bounded; nothing "
            "was called. Set max_completion_tokens (and max_tokens on the synthesis), or "
            "give the model's max_completion_tokens in its Pricing."
        )
    elif projection.total_usd > budget:
        steps = ", ".join(f"{step} ${usd:.4f}" for step, usd in projection.steps.items())
        error = (
            f"The run's worst case is ${projection.total_usd:.4f} ({steps}), above "
            f"max_cost_usd={budget:g}; nothing was called. Lower max_tool_calls or "
            "max_completion_tokens, use fewer or cheaper models, or raise the budget."
        )
    else:
        return None
    refused = FusionResult.failure(error, "budget_exceeded")
    return refused.model_copy(update={"cost_projection": projection})
