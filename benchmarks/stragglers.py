"""4. A panel model that hangs: the fusion must end at ``timeout_s`` plus a small margin.

Four panelists: three answer in 200 to 400 ms, one never answers (the server
holds its request open). The judge takes 100 ms and the synthesis 100 ms, so
the fusion can end no earlier than ``timeout_s + 0.2 s``; the margin is what
it takes beyond that. The hung model must come back in ``failed_models``.
A warm-up run is not counted.

Then a panel with one model at ten times the others' latency (three at 0.3 s,
one at 3 s), with and without ``quorum_grace_s``, taking turns run by run: the
fusion's latency as a ratio to the fast panelists' (0.3 s plus judge and
synthesis), and how the slow one ended.

    python -m benchmarks.stragglers [--timeouts 1 2] [--repeats 5] [--grace 0.2]
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


SLOW = "bench/slow"


async def quorum(repeats: int, grace_s: float) -> dict[str, Any]:
    """A straggler at ten times the others' latency, with and without a quorum grace."""
    sc = Scenario(
        panel={"bench/q0": 0.3, "bench/q1": 0.3, "bench/q2": 0.3, SLOW: 3.0},
        judge_s=0.1,
        synth_s=0.1,
    )
    fast_path = 0.3 + sc.judge_s + sc.synth_s
    with ServerProcess() as server:
        server.configure(sc.server_models(), record=True)
        fusions = {
            "no grace": Fusion(server.base_url, sc, timeout_s=30),
            f"quorum 3 + grace {grace_s:g} s": Fusion(
                server.base_url, sc, timeout_s=30, min_responses=3, quorum_grace_s=grace_s
            ),
        }
        for fusion in fusions.values():
            await fusion.run()  # warm-up, not counted
        walls: dict[str, list[float]] = {name: [] for name in fusions}
        slow_ended: dict[str, set[str]] = {name: set() for name in fusions}
        for _ in range(repeats):
            for name, fusion in fusions.items():
                started = time.perf_counter()
                out = await fusion.run()
                walls[name].append(time.perf_counter() - started)
                result = FusionResult.model_validate(out["result"])
                answered = {r.model for r in result.responses}
                cut = {f.failure_reason for f in result.failed_models if f.model == SLOW}
                slow_ended[name] |= {"answered"} if SLOW in answered else cut
    return {
        "fast_path_s": fast_path,
        "slow_panelist_s": sc.panel[SLOW],
        "runs": [
            {
                "mode": name,
                "wall_s": summary(walls[name]),
                "ratio_to_fast_path": summary([w / fast_path for w in walls[name]]),
                "slow_panelist": sorted(slow_ended[name]),
            }
            for name in fusions
        ],
    }


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


def report_quorum(data: dict[str, Any]) -> None:
    rows = [
        [
            r["mode"],
            r["wall_s"]["median"],
            r["ratio_to_fast_path"]["median"],
            r["ratio_to_fast_path"]["max"],
            ",".join(r["slow_panelist"]),
        ]
        for r in data["runs"]
    ]
    print(
        table(["mode", "wall p50 s", "/ fast path p50", "/ fast path max", "slow panelist"], rows)
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--timeouts", type=float, nargs="+", default=[1.0, 2.0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--grace", type=float, default=0.2, help="quorum_grace_s")
    args = parser.parse_args()
    data = asyncio.run(main(args.timeouts, args.repeats))
    report(data)
    data["quorum"] = asyncio.run(quorum(args.repeats, args.grace))
    report_quorum(data["quorum"])
    write_results("stragglers", data)
