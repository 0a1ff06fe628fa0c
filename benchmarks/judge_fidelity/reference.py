"""Chat models for the harness: the planted panel, and reference judges that validate the scorer.

The reference judges read the judge prompt the pipeline really sends (the
fenced, labelled responses), find which label holds which planted answer, and
answer with structured output the way a real judge would:

- ``oracle``: the planted truth, under the right labels (must score 1.0);
- ``empty``: an analysis with every list empty (must score 0);
- ``invented``: the planted truth, but every other citation names a model that
  is not on the panel (``Response Z``, ``openai/gpt-invented``): must be penalised.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from typing import Any

from langchain_core.callbacks import AsyncCallbackManagerForLLMRun, CallbackManagerForLLMRun
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage
from langchain_core.outputs import ChatGeneration, ChatResult
from langchain_core.runnables import Runnable, RunnableLambda

from benchmarks.judge_fidelity.cases import Case
from langfusion.graph.judge import fence, fit

REFERENCE_JUDGES = ("oracle", "empty", "invented")
_RESPONSE = re.compile(r'<response label="(Response [A-Z])">\n(.*?)\n</response>', re.DOTALL)


class PlantedAnswer(BaseChatModel):
    """A panel model that answers with its planted text."""

    text: str

    @property
    def _llm_type(self) -> str:
        return "planted-answer"

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        return ChatResult(generations=[ChatGeneration(message=AIMessage(self.text))])


class ReferenceJudge(BaseChatModel):
    """A judge that knows the planted truth of ``case`` (see the module docstring)."""

    case: Any  # a Case; kept as given
    mode: str = "oracle"

    @property
    def _llm_type(self) -> str:
        return "reference-judge"

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        prompt = "\n".join(str(m.content) for m in messages)
        verdict = self.verdict(_labels_of(prompt, self.case))
        return ChatResult(generations=[ChatGeneration(message=AIMessage(json.dumps(verdict)))])

    async def _agenerate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        return self._generate(messages, stop, None, **kwargs)

    def with_structured_output(  # type: ignore[override]
        self, schema: Any, *, include_raw: bool = False, **kwargs: Any
    ) -> Runnable[Any, Any]:
        """Reply as ``json_mode`` does: the raw message and its parsed JSON."""

        async def parse(messages: Any) -> dict[str, Any]:
            raw = await self.ainvoke(messages)
            return {"raw": raw, "parsed": json.loads(raw.text), "parsing_error": None}

        return RunnableLambda(parse)

    def verdict(self, label_of: dict[str, str]) -> dict[str, Any]:
        """The analysis this judge writes, given which label each panel model has."""
        case = self.case
        empty = self.mode == "empty"
        cited = 0

        def label(model: str) -> str:
            nonlocal cited
            cited += 1
            if self.mode == "invented" and cited % 2 == 0:
                return "Response Z" if cited % 4 == 0 else "openai/gpt-invented"
            return label_of[model]

        def labels(models: Sequence[str]) -> list[str]:
            return [label(m) for m in models]

        return {
            "reasoning": "Compared every response claim by claim.",
            "consensus": [] if empty else [c.text for c in case.consensus],
            "contradictions": []
            if empty
            else [
                {
                    "topic": c.topic,
                    "stances": [
                        {"model": label(m), "stance": side.text}
                        for side in c.sides
                        for m in side.models
                    ],
                }
                for c in case.contradictions
            ],
            "partial_coverage": []
            if empty
            else [{"models": labels(p.models), "point": p.text} for p in case.partial],
            "unique_insights": []
            if empty
            else [{"model": label(u.models[0]), "insight": u.text} for u in case.unique],
            "blind_spots": [] if empty else [b.what for b in case.blind_spots],
        }


def _labels_of(prompt: str, case: Case) -> dict[str, str]:
    """Which label the judge prompt gives each planted answer (its text, fenced, is unique)."""
    by_text = {fence(fit(text)).strip(): model for model, text in case.answers.items()}
    found = {by_text[body.strip()]: label for label, body in _RESPONSE.findall(prompt)}
    if set(found) != set(case.models):
        raise ValueError(f"{case.id}: the judge prompt does not hold every planted answer")
    return found
