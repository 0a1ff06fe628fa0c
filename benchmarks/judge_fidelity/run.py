"""Running a judge on the planted panels, through the real fusion graph.

Each case is one fusion: the planted answers stand in for the panel models,
the judge is any slug the model registry serves (OpenRouter, ``local/...``, a
registered endpoint) or a reference judge, and the graph does what it does in
production: shuffled neutral labels, fencing, the per-run enum schema,
repair, and dropping citations of non-panelists. The synthesis is skipped.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import HumanMessage
from langchain_core.runnables import RunnableConfig

from benchmarks.judge_fidelity.cases import Case
from benchmarks.judge_fidelity.reference import REFERENCE_JUDGES, PlantedAnswer, ReferenceJudge
from benchmarks.judge_fidelity.score import Score, score_case
from langfusion.graph import FusionContext, ModelFactory, build_fusion_graph, default_registry

REFERENCE_PREFIX = "reference/"


def judge_slug(name: str) -> str:
    """``oracle``, ``empty`` and ``invented`` name the reference judges; anything else is a slug."""
    return REFERENCE_PREFIX + name if name in REFERENCE_JUDGES else name


class CaseFactory:
    """Serves one case: its planted answers for the panel, the judge from ``judges``."""

    def __init__(self, case: Case, judges: ModelFactory) -> None:
        self.case = case
        self.judges = judges

    def __call__(self, slug: str, /, **settings: Any) -> BaseChatModel:
        """The planted answer of a panel slug, else the judge."""
        if slug in self.case.answers:
            return PlantedAnswer(text=self.case.answers[slug])
        if slug.startswith(REFERENCE_PREFIX):
            return ReferenceJudge(case=self.case, mode=slug.removeprefix(REFERENCE_PREFIX))
        return self.judges(slug, **settings)


async def judge_case(
    case: Case, judge: str, *, judges: ModelFactory | None = None, timeout_s: float = 600.0
) -> dict[str, Any]:
    """Run ``judge`` on ``case``; the fusion result as the SPEC's JSON."""
    graph = build_fusion_graph(model_factory=CaseFactory(case, judges or default_registry))
    context = FusionContext(
        analysis_models=case.models,
        model=judge_slug(judge),
        synthesize=False,
        web_tools=False,
        judge_timeout_s=timeout_s,
    )
    # The labels' order is drawn from the fusion id: one per case makes a run
    # repeatable, so two judges (or two prompts) see the same labels.
    config: RunnableConfig = {"metadata": {"fusion_id": f"judge-fidelity/{case.id}"}}
    out = await graph.ainvoke({"messages": [HumanMessage(case.question)]}, config, context=context)
    result: dict[str, Any] = out["result"]
    return result


async def judge_cases(
    cases: Sequence[Case],
    judge: str,
    *,
    judges: ModelFactory | None = None,
    concurrency: int = 1,
    timeout_s: float = 600.0,
) -> list[tuple[Case, dict[str, Any], Score]]:
    """Run ``judge`` on every case, at most ``concurrency`` at a time; score each."""
    gate = asyncio.Semaphore(concurrency)

    async def one(case: Case) -> tuple[Case, dict[str, Any], Score]:
        async with gate:
            result = await judge_case(case, judge, judges=judges, timeout_s=timeout_s)
        return case, result, score_case(case, result)

    return list(await asyncio.gather(*(one(case) for case in cases)))
