"""1. Fusion wall time over its critical path, for panels of 1, 2, 4 and 8 models.

Panel latencies are spread evenly from 200 ms to 2 s (a panel of one waits
2 s); the judge takes 300 ms and the synthesis 200 ms, so the critical path
of every run is 2.5 s. Runs of the graph, of floor (a) (pre-built
``ChatOpenAI`` + ``asyncio.gather``) and of floor (b) (raw ``aiohttp``
posting the same bodies) alternate, one at a time, in a rotating order. With 8 repeats, p99 is
the worst run.

``--freeze-gc`` moves everything alive after the warm-up into the collector's
permanent generation (``gc.freeze()``, what a long-running service does after
start-up), for every implementation alike: a full collection of the shared
heap then no longer lands, 100 ms or more at a time, on whichever run is
in flight.

    python -m benchmarks.critical_path [--repeats 8] [--freeze-gc]
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import time
from typing import Any

from benchmarks._common import (
    IMPLS,
    Scenario,
    capture_bodies,
    make,
    spread,
    summary,
    table,
    write_results,
)
from benchmarks.server import ServerProcess

PANELS = (1, 2, 4, 8)
TARGET = 1.02


async def measure(
    server: ServerProcess, n: int, repeats: int, freeze_gc: bool = False
) -> dict[str, Any]:
    scenario = Scenario(panel=spread(n, 0.2, 2.0), judge_s=0.3, synth_s=0.2)
    bodies = await capture_bodies(server, scenario)
    impls = {name: make(name, server.base_url, scenario, bodies) for name in IMPLS}
    for impl in impls.values():
        await impl.check()
    if freeze_gc:
        gc.collect()
        gc.freeze()
    walls: dict[str, list[float]] = {name: [] for name in impls}
    order = list(impls)
    for i in range(repeats):
        # A rotating order: no implementation always runs right after another.
        for name in order[i % len(order) :] + order[: i % len(order)]:
            started = time.perf_counter()
            await impls[name].run()
            walls[name].append(time.perf_counter() - started)
    for impl in impls.values():
        await impl.close()
    cp = scenario.critical_path_s
    return {
        "panel": n,
        "latencies_s": list(scenario.panel.values()),
        "judge_s": scenario.judge_s,
        "synth_s": scenario.synth_s,
        "critical_path_s": cp,
        **{
            name: {
                "wall_s": summary(values),
                "ratio": summary([v / cp for v in values]),
                "overhead_ms": summary([(v - cp) * 1000 for v in values]),
            }
            for name, values in walls.items()
        },
    }


async def main(repeats: int, freeze_gc: bool = False) -> dict[str, Any]:
    with ServerProcess() as server:
        runs = []
        for n in PANELS:
            runs.append(await measure(server, n, repeats, freeze_gc))
            print(f"panel of {n}: done", flush=True)
    return {
        "repeats": repeats,
        "freeze_gc": freeze_gc,
        "target_ratio_at_8": TARGET,
        "runs": runs,
    }


def report(data: dict[str, Any]) -> None:
    rows = []
    for run in data["runs"]:
        for name in IMPLS:
            r, o = run[name]["ratio"], run[name]["overhead_ms"]
            rows.append(
                [
                    run["panel"],
                    name,
                    run["critical_path_s"],
                    r["median"],
                    r["p95"],
                    r["p99"],
                    o["median"],
                    o["p99"],
                ]
            )
    print(
        table(
            [
                "panel",
                "impl",
                "critical path s",
                "ratio p50",
                "ratio p95",
                "ratio p99",
                "overhead p50 ms",
                "overhead p99 ms",
            ],
            rows,
        )
    )
    at8 = next(r for r in data["runs"] if r["panel"] == 8)["fusion"]["ratio"]["p99"]
    verdict = "met" if at8 <= TARGET else "MISSED"
    print(f"\ntarget: ratio <= {TARGET} at 8 panelists (p99): {at8:.4f} -> {verdict}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=8)
    parser.add_argument("--freeze-gc", action="store_true", help="gc.freeze() after the warm-up")
    args = parser.parse_args()
    data = asyncio.run(main(args.repeats, args.freeze_gc))
    report(data)
    write_results("critical_path" + ("_freeze_gc" if args.freeze_gc else ""), data)
