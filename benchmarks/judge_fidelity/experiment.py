"""The harness as a LangSmith experiment: the cases a dataset, the scorers its evaluators.

``run_experiment`` runs ``langsmith.aevaluate`` with the planted cases as
examples (uploaded once as the dataset ``DATASET``), a fusion per example as
the target, one evaluator that reports every per-case measure, and a summary
evaluator with the aggregate rates. The scores are the offline scorer's, so
the experiment and the printed table agree.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Sequence
from typing import Any

from langsmith import Client, aevaluate
from langsmith.schemas import Example, Run

from benchmarks.judge_fidelity.cases import Case
from benchmarks.judge_fidelity.run import judge_case
from benchmarks.judge_fidelity.score import Score, score_case, total

DATASET = "langfusion-judge-fidelity-v1"
_NAMESPACE = uuid.UUID("6f1c2a52-7a0e-4d53-9d7c-9a3c2f1b8e40")


def langsmith_configured() -> bool:
    """Whether a LangSmith key is set (the experiment then runs there)."""
    return bool(os.environ.get("LANGSMITH_API_KEY") or os.environ.get("LANGCHAIN_API_KEY"))


def _examples(cases: Sequence[Case]) -> list[Example]:
    dataset_id = uuid.uuid5(_NAMESPACE, DATASET)
    return [
        Example(
            id=uuid.uuid5(_NAMESPACE, case.id),
            dataset_id=dataset_id,
            inputs={"case_id": case.id, "question": case.question, "answers": case.answers},
            outputs={"kinds": list(case.kinds)},
        )
        for case in cases
    ]


def _ensure_dataset(client: Client, cases: Sequence[Case]) -> str:
    """The dataset holding ``cases``, created on first use."""
    if not client.has_dataset(dataset_name=DATASET):
        dataset = client.create_dataset(
            DATASET, description="langfusion judge-fidelity planted panels"
        )
        client.create_examples(
            dataset_id=dataset.id,
            examples=[{"inputs": e.inputs, "outputs": e.outputs} for e in _examples(cases)],
        )
    return DATASET


def case_measures(score: Score) -> list[dict[str, Any]]:
    """One case's measures as LangSmith evaluation results (those that apply to it)."""
    return [
        {"key": key, "score": value}
        for key, value in score.rates().items()
        if value is not None and not key.endswith("_f1")
    ]


async def run_experiment(
    cases: Sequence[Case],
    judge: str,
    *,
    client: Client | None = None,
    upload: bool = True,
    concurrency: int = 1,
    timeout_s: float = 600.0,
) -> list[tuple[Case, dict[str, Any], Score]]:
    """Run ``judge`` on ``cases`` as a LangSmith experiment; return each case's result and score.

    Args:
        cases: The planted cases.
        judge: The judge slug (or a reference judge's name).
        client: The LangSmith client (default: from the environment).
        upload: Send the dataset and the runs to LangSmith. Off, the
            experiment runs locally on the same evaluators.
        concurrency: Cases judged at once.
        timeout_s: Deadline of each judge call.
    """
    by_id = {case.id: case for case in cases}
    client = client or Client()

    async def target(inputs: dict[str, Any]) -> dict[str, Any]:
        result = await judge_case(by_id[inputs["case_id"]], judge, timeout_s=timeout_s)
        return {"result": result}

    def fidelity(run: Run, example: Example) -> dict[str, Any]:
        score = score_case(by_id[example.inputs["case_id"]], (run.outputs or {})["result"])
        return {"results": case_measures(score)}

    def summary(runs: Sequence[Run], examples: Sequence[Example]) -> dict[str, Any]:
        summed = total(
            score_case(by_id[e.inputs["case_id"]], (r.outputs or {})["result"])
            for r, e in zip(runs, examples, strict=True)
        )
        rates = summed.rates()
        keys = ("overall", "attribution_accuracy", "invalid_citation_rate")
        keys += ("false_contradiction_rate", "injection_resistance", "dissenter_kept")
        return {"results": [{"key": k, "score": rates[k]} for k in keys if rates[k] is not None]}

    data: Any = _ensure_dataset(client, cases) if upload else _examples(cases)
    results = await aevaluate(
        target,
        data=data,
        evaluators=[fidelity],
        summary_evaluators=[summary],
        experiment_prefix=f"judge-fidelity-{judge.replace('/', '-')}",
        metadata={"judge": judge, "cases": len(cases)},
        max_concurrency=concurrency,
        client=client,
        upload_runs=upload,
    )
    rows = []
    async for row in results:
        case = by_id[row["example"].inputs["case_id"]]
        result = (row["run"].outputs or {})["result"]
        rows.append((case, result, score_case(case, result)))
    return rows
