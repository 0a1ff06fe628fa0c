"""What a run may cost at worst: ``estimate_cost``'s answer, and a budget refusal's reason."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

# Where a call's completion cap came from: the cap it is sent (the run's
# max_completion_tokens or the caller's max_tokens, or the endpoint's default),
# the most the model can write, what its context leaves after the prompt, or nowhere.
CapSource = Literal["sent", "model_limit", "context_length", "unknown"]
TokenCounting = Literal["tiktoken", "estimate"]


class ProjectedCall(BaseModel):
    """One model call of a run at its worst: every round at its prompt and its completion cap.

    Attributes:
        step: ``panel``, ``judge`` or ``synthesis``.
        model: The slug called.
        rounds: Requests the call may make: ``max_tool_calls + 1`` with web tools, else 1.
        prompt_tokens: Prompt tokens of one round, counted (see ``token_counting``).
        completion_tokens: The completion cap of one round; ``None`` when none is known.
        cap_source: Where that cap came from.
        cost_usd: ``rounds * (prompt + completion)`` at the model's prices;
            ``None`` when it has no price, or no known cap and a price above nothing.
    """

    step: Literal["panel", "judge", "synthesis"]
    model: str
    rounds: int
    prompt_tokens: int
    completion_tokens: int | None
    cap_source: CapSource
    cost_usd: float | None


class CostProjection(BaseModel):
    """The worst case of a run, computed without calling any model.

    ``total_usd`` is the sum of every call that could be priced and capped;
    it bounds the run only when ``complete`` (nothing is ``unpriced`` or
    ``uncapped``). A run under ``max_cost_usd`` is refused unless it is.

    Attributes:
        total_usd: The worst case, in US dollars.
        complete: Every call is priced and capped, so ``total_usd`` bounds the run.
        steps: The worst case of each step (``panel``, ``judge``, ``synthesis``).
        models: The worst case of each model, over every step it takes part in.
        calls: Each call, with its prompt, its cap and its rounds.
        unpriced: Slugs with no known price.
        uncapped: Priced slugs with a call whose completion has no known cap.
        token_counting: ``tiktoken`` (counted with a real tokenizer, OpenAI's
            ``o200k_base``; other families count somewhat differently) or
            ``estimate`` (four characters a token: no tokenizer could be loaded).
    """

    total_usd: float
    complete: bool
    steps: dict[str, float] = Field(default_factory=dict)
    models: dict[str, float] = Field(default_factory=dict)
    calls: list[ProjectedCall] = Field(default_factory=list)
    unpriced: list[str] = Field(default_factory=list)
    uncapped: list[str] = Field(default_factory=list)
    token_counting: TokenCounting
