"""``python -m benchmarks.judge_fidelity --judge SLUG``: score a judge on the planted panels.

Prints the table and writes the per-case results and the summary as JSON
(``benchmarks/results/judge_fidelity/<judge>.json`` unless ``--out`` says
otherwise). With a LangSmith key set (``LANGSMITH_API_KEY``), it also runs as
a LangSmith experiment; ``--langsmith off`` keeps it local.

Examples::

    python -m benchmarks.judge_fidelity --judge oracle          # the scorer's ceiling: 1.0
    python -m benchmarks.judge_fidelity --judge local/gemma-3-270m
    OPENROUTER_API_KEY=... python -m benchmarks.judge_fidelity \\
        --judge ~anthropic/claude-opus-latest --concurrency 8
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import sys
import time
from pathlib import Path
from typing import Any

from benchmarks.judge_fidelity.cases import load_cases
from benchmarks.judge_fidelity.score import table, total

RESULTS = Path(__file__).resolve().parents[1] / "results" / "judge_fidelity"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.judge_fidelity")
    parser.add_argument(
        "--judge",
        required=True,
        help="judge slug (OpenRouter, local/..., registered), or oracle, empty, invented",
    )
    parser.add_argument("--limit", type=int, help="only the first N cases")
    parser.add_argument(
        "--every",
        type=int,
        default=1,
        help="only every K-th case (K=3: cases 0, 3, 6, ...), a subset that spans every kind",
    )
    parser.add_argument("--kind", help="only cases of this kind (mixed, control, dissenter, ...)")
    parser.add_argument("--concurrency", type=int, default=1, help="cases judged at once")
    parser.add_argument("--timeout", type=float, default=600.0, help="seconds per judge call")
    parser.add_argument("--out", type=Path, help="where to write the JSON results")
    parser.add_argument(
        "--langsmith",
        choices=("auto", "on", "off"),
        default="auto",
        help="run as a LangSmith experiment (auto: when LANGSMITH_API_KEY is set)",
    )
    return parser


async def _main(args: argparse.Namespace) -> dict[str, Any]:
    cases = load_cases()
    if args.kind:
        cases = [c for c in cases if args.kind in c.kinds]
    cases = cases[:: max(args.every, 1)]
    cases = cases[: args.limit] if args.limit else cases
    started = time.monotonic()
    options = {"concurrency": args.concurrency, "timeout_s": args.timeout}
    from benchmarks.judge_fidelity.experiment import langsmith_configured, run_experiment

    if args.langsmith == "on" or (args.langsmith == "auto" and langsmith_configured()):
        rows = await run_experiment(cases, args.judge, **options)
    else:
        from benchmarks.judge_fidelity.run import judge_cases

        rows = await judge_cases(cases, args.judge, **options)
    summed = total(score for _, _, score in rows)
    return {
        "judge": args.judge,
        "cases": len(rows),
        "selection": {"kind": args.kind, "every": args.every, "limit": args.limit},
        "seconds": round(time.monotonic() - started, 1),
        "summary": summed.rates(),
        "counts": {
            "attributed": summed.attributed,
            "citations": summed.citations,
            "controls": summed.controls,
            "injections": summed.injections,
            "dissenters": summed.dissenters,
            "judge_failures": summed.judge_failures,
        },
        "table": table(summed, args.judge),
        "per_case": [
            {
                "id": case.id,
                "kinds": list(case.kinds),
                "rates": {k: v for k, v in score.rates().items() if v is not None},
                "failure_reason": result.get("failure_reason"),
                "analysis": result.get("analysis"),
                "analysis_meta": result.get("analysis_meta"),
            }
            for case, result, score in rows
        ],
    }


def main(argv: list[str] | None = None) -> int:
    """Run the harness; 0 on success."""
    args = _parser().parse_args(argv)
    report = asyncio.run(_main(args))
    out = args.out or RESULTS / (re.sub(r"[^A-Za-z0-9._-]+", "_", args.judge) + ".json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=1, ensure_ascii=False) + "\n")
    print(report["table"])
    print(f"\n{report['cases']} cases in {report['seconds']} s; results in {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
