"""4. A panel model that hangs: the fusion must end at ``timeout_s`` plus a small margin.

Four panelists: three answer in 200 to 400 ms, one never answers (the server
holds its request open). The judge takes 100 ms and the synthesis 100 ms, so
the fusion can end no earlier than ``timeout_s + 0.2 s``; the margin is what
it takes beyond that. The hung model must come back in ``failed_models``.
A warm-up run is not counted.

    python -m benchmarks.stragglers [--timeouts 1 2] [--repeats 5]
"""

from __future__ import annotations

import argparse
import asyncio
import time
from typing import Any

from benchmarks._common import Fusion, Scenario, summary, table, write_results
from benchmarks.server import ServerProcess
from langfusion.graph import FusionResult

HUNG = "bench/hung"


def scenario() -> Scenario:
    panel = {"bench/p0": 0.2, "bench/p1": 0.3, "bench/p2": 0.4, HUNG: 0.0}
    return Scenario(panel=panel, judge_s=0.1, synth_s=0.1, extra={HUNG: {"hang": True}})


async def main(timeouts: list[float], repeats: int) -> dict[str, Any]:
    sc = scenario()
    runs = []
    with ServerProcess() as server:
        server.configure(sc.server_models(), record=True)
        for timeout_s in timeouts:
            fusion = Fusion(server.base_url, sc, timeout_s=timeout_s)
            floor = sc.judge_s + sc.synth_s + timeout_s
            walls, reasons, hung_requests = [], set(), []
            await fusion.run()  # warm-up (first-call imports and schema building), not counted
            for _ in range(repeats):
                server.log()
                started = time.perf_counter()
                out = await fusion.run()
                walls.append(time.perf_counter() - started)
                result = FusionResult.model_validate(out["result"])
                if result.status != "ok" or len(result.responses) != 3:
                    raise SystemExit(f"unexpected result: {result.model_dump_json()[:400]}")
                reasons |= {f.failure_reason for f in result.failed_models if f.model == HUNG}
                hung_requests.append(sum(1 for e in server.log() if e["model"] == HUNG))
            runs.append(
                {
                    "timeout_s": timeout_s,
                    "earliest_end_s": floor,
                    "wall_s": summary(walls),
                    "margin_ms": summary([(w - floor) * 1000 for w in walls]),
                    "hung_model_failure_reason": sorted(reasons),
                    "requests_to_hung_model_per_fusion": max(hung_requests),
                }
            )
            print(f"timeout_s={timeout_s}: done", flush=True)
    return {"panel": sc.panel, "judge_s": sc.judge_s, "synth_s": sc.synth_s, "runs": runs}


def report(data: dict[str, Any]) -> None:
    rows = [
        [
            r["timeout_s"],
            r["earliest_end_s"],
            r["wall_s"]["median"],
            r["margin_ms"]["median"],
            r["margin_ms"]["p95"],
            r["margin_ms"]["max"],
            ",".join(r["hung_model_failure_reason"]),
            r["requests_to_hung_model_per_fusion"],
        ]
        for r in data["runs"]
    ]
    print(
        table(
            [
                "timeout_s",
                "earliest end s",
                "wall p50 s",
                "margin p50 ms",
                "margin p95 ms",
                "margin max ms",
                "failure_reason",
                "requests to hung model",
            ],
            rows,
        )
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--timeouts", type=float, nargs="+", default=[1.0, 2.0])
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    data = asyncio.run(main(args.timeouts, args.repeats))
    report(data)
    write_results("stragglers", data)
