"""2. The cost of one fusion with instant models (0 ms latency, 8 panelists).

Measures, in one run and interleaved fusion by fusion, the graph against two
floors that make the same HTTP calls: (a) pre-built ``ChatOpenAI`` models +
``asyncio.gather`` + a pre-built ``with_structured_output`` judge + the
synthesis; (b) one pooled ``aiohttp`` session posting the graph's own request
bodies. A third, ``floor_a_langgraph``, makes floor (a)'s calls inside a
minimal LangGraph graph of the fusion graph's shape: the graph minus it is
what langfusion's nodes add, it minus floor (a) what LangGraph's orchestration
adds. Fusions run one at a time; the server runs in its own process, so
the client's CPU time per fusion (``time.process_time``) is the pure cost of
one fusion on the caller's side.

Then the graph's own cost without HTTP: the same pipeline over in-process
instant models against ``asyncio.gather`` over the same models, a minimal
LangGraph graph of the same shape making the same calls (LangGraph's own
share), and the graph compiled with an ``InMemorySaver`` (what a durable run
adds).

Then profiles the graph: a per-package breakdown of the client's CPU
(cProfile self time, graph minus floor (a)) and a pyinstrument call tree,
written to ``benchmarks/results/cpu_cost_profile.txt``.

``--pool sdk`` runs the graph on ``openai.DefaultAsyncHttpxClient`` instead
of the pool ``graph/models.py`` builds; ``--retry-floor`` adds floor (a) with
``max_retries=2`` (the graph's client retries) to the interleaved rounds.

    python -m benchmarks.cpu_cost [--rounds 8 --fusions 25 --profile-fusions 60]
        [--pool sdk] [--retry-floor]
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import gc
import pstats
import re
import time
from collections import defaultdict
from typing import Any

import psutil

from benchmarks._common import (
    FLOOR_A_RETRIES,
    IMPLS,
    RESULTS,
    FloorALangGraph,
    Scenario,
    capture_bodies,
    make,
    spread,
    summary,
    table,
    use_sdk_pool,
    write_results,
)
from benchmarks.server import ServerProcess

TARGET = 1.2


def scenario() -> Scenario:
    return Scenario(panel=spread(8, 0.0, 0.0), answer_chars=400)


async def measure(
    server: ServerProcess, rounds: int, fusions: int, retry_floor: bool = False
) -> dict[str, Any]:
    sc = scenario()
    bodies = await capture_bodies(server, sc)
    names = (*IMPLS, FloorALangGraph.name, *((FLOOR_A_RETRIES,) if retry_floor else ()))
    impls = {name: make(name, server.base_url, sc, bodies) for name in names}
    for impl in impls.values():
        await impl.check()
        for _ in range(10):
            await impl.run()
    server_proc = psutil.Process(server.pid)
    server_cpu: dict[str, float] = {}
    sent: dict[str, tuple[int, int]] = {}
    # What each fusion sends and costs the server, one implementation at a time.
    for name, impl in impls.items():
        before = server.stats()
        server_before = sum(server_proc.cpu_times()[:2])
        for _ in range(fusions):
            await impl.run()
        server_cpu[name] = (sum(server_proc.cpu_times()[:2]) - server_before) / fusions
        after = server.stats()
        sent[name] = (
            after["requests"] - before["requests"],
            after["bytes_in"] - before["bytes_in"],
        )
    # The client's cost: the implementations take turns fusion by fusion (in a
    # rotating order), so a burst of other work on the machine lands on all.
    walls: dict[str, list[float]] = defaultdict(list)
    cpu: dict[str, list[float]] = defaultdict(list)
    order = list(impls)
    for _ in range(rounds):
        gc.collect()
        spent: dict[str, float] = defaultdict(float)
        for i in range(fusions):
            for name in order[i % len(order) :] + order[: i % len(order)]:
                cpu_before, started = time.process_time(), time.perf_counter()
                await impls[name].run()
                walls[name].append(time.perf_counter() - started)
                spent[name] += time.process_time() - cpu_before
        for name in order:
            cpu[name].append(spent[name] / fusions)
    for impl in impls.values():
        await impl.close()
    results = {
        name: {
            "wall_ms": summary([w * 1000 for w in walls[name]]),
            "cpu_ms_per_fusion": summary([c * 1000 for c in cpu[name]]),
            "server_cpu_ms_per_fusion": server_cpu[name] * 1000,
            "requests_per_fusion": sent[name][0] / fusions,
            "request_bytes_per_fusion": sent[name][1] / fusions,
        }
        for name in impls
    }
    return {"rounds": rounds, "fusions_per_round": fusions, "impls": results}


def _package(filename: str) -> str:
    if "site-packages/" in filename:
        return filename.split("site-packages/", 1)[1].split("/", 1)[0].removesuffix(".py")
    if "/graph/" in filename or "/tools/" in filename:
        return "langfusion"
    if "/benchmarks/" in filename:
        return "benchmarks"
    if "asyncio/" in filename:
        return "asyncio"
    if filename.startswith("~") or filename == "<built-in>":
        return "builtins (C)"
    return "stdlib"


async def by_package(
    server: ServerProcess, fusions: int
) -> tuple[dict[str, dict[str, float]], dict[str, float], dict[str, float]]:
    """Client CPU self time per fusion by package; Python function calls and
    hand-offs to a worker thread (``loop.run_in_executor``) per fusion.

    The call count hardly moves with the machine's load, unlike any timing:
    on a shared machine it is the steadiest measure of work done per fusion.
    """
    sc = scenario()
    out: dict[str, dict[str, float]] = {}
    calls: dict[str, float] = {}
    hops: dict[str, float] = {}
    for name in ("fusion", "floor_a", FloorALangGraph.name):
        impl = make(name, server.base_url, sc)
        await impl.check()
        for _ in range(5):
            await impl.run()
        profile = cProfile.Profile()
        profile.enable()
        for _ in range(fusions):
            await impl.run()
        profile.disable()
        await impl.close()
        groups: dict[str, float] = defaultdict(float)
        stats: dict[Any, Any] = pstats.Stats(profile).stats  # type: ignore[attr-defined]
        for (filename, _, _), (_, _, tottime, _, _) in stats.items():
            groups[_package(filename)] += tottime * 1000 / fusions
        out[name] = dict(groups)
        calls[name] = sum(ncalls for _, ncalls, _, _, _ in stats.values()) / fusions
        hops[name] = (
            sum(
                ncalls
                for (filename, _, function), (_, ncalls, _, _, _) in stats.items()
                if function == "run_in_executor" and filename.endswith("base_events.py")
            )
            / fusions
        )
    return out, calls, hops


TREE_MIN_PERCENT = 1.5
_PERCENT = re.compile(r"(\d+(?:\.\d+)?)% ")


def _share(line: str) -> float:
    """A tree line's share of the total (lines without one, such as headers, are kept)."""
    match = _PERCENT.search(line)
    return float(match.group(1)) if match else 100.0


async def tree(server: ServerProcess, fusions: int) -> str:
    from pyinstrument import Profiler

    impl = make("fusion", server.base_url, scenario())
    await impl.check()
    profiler = Profiler(interval=0.001, async_mode="disabled")
    profiler.start()
    for _ in range(fusions):
        await impl.run()
    profiler.stop()
    # Library frames shown: with the panel in Send tasks, the time is spent
    # under the event loop rather than under the caller's await.
    full = profiler.output_text(show_all=True, time="percent_of_total")
    tree_text = "\n".join(line for line in full.splitlines() if _share(line) >= TREE_MIN_PERCENT)
    flat = profiler.output_text(flat=True, flat_time="total", time="percent_of_total")
    flat_head = "\n".join(flat.splitlines()[:90])
    return f"{tree_text}\n\n== flat, total time per function (top) ==\n{flat_head}\n"


async def in_process(rounds: int, fusions: int) -> dict[str, Any]:
    """CPU per fusion with no HTTP: graph, durable graph, bare LangGraph, asyncio floor."""
    from benchmarks._inproc import bare_graph_runner, floor_runner, graph_runner

    runners = {
        "fusion": graph_runner(),
        "fusion, InMemorySaver": graph_runner(durable=True),
        "bare LangGraph, same shape": bare_graph_runner(),
        "asyncio.gather floor": floor_runner(),
    }
    for run in runners.values():
        for _ in range(20):
            await run()
    cpu: dict[str, list[float]] = defaultdict(list)
    wall: dict[str, list[float]] = defaultdict(list)
    order = list(runners)
    for _ in range(rounds):
        gc.collect()
        spent: dict[str, list[float]] = defaultdict(lambda: [0.0, 0.0])
        for i in range(fusions):
            for name in order[i % len(order) :] + order[: i % len(order)]:
                cpu0, wall0 = time.process_time(), time.perf_counter()
                await runners[name]()
                spent[name][0] += time.process_time() - cpu0
                spent[name][1] += time.perf_counter() - wall0
        for name in order:
            cpu[name].append(spent[name][0] * 1000 / fusions)
            wall[name].append(spent[name][1] * 1000 / fusions)
    return {
        name: {"cpu_ms_per_fusion": summary(cpu[name]), "wall_ms_per_fusion": summary(wall[name])}
        for name in runners
    }


async def main(
    rounds: int, fusions: int, profile_fusions: int, pool: str, retry_floor: bool = False
) -> dict[str, Any]:
    if pool == "sdk":
        use_sdk_pool()
    with ServerProcess() as server:
        data = await measure(server, rounds, fusions, retry_floor)
        data["graph_pool"] = pool
        print("measured over HTTP; measuring in process", flush=True)
        data["in_process"] = await in_process(rounds, fusions * 4)
        print("profiling", flush=True)
        server.configure(scenario().server_models())
        by, calls, hops = await by_package(server, profile_fusions)
        data["cprofile_self_ms_per_fusion"] = by
        data["python_calls_per_fusion"] = calls
        data["thread_hops_per_fusion"] = hops
        text = await tree(server, profile_fusions)
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"cpu_cost_profile{'_sdk-pool' if pool == 'sdk' else ''}.txt").write_text(text)
    data["target_ratio_vs_floor_a"] = TARGET
    return data


def report(data: dict[str, Any]) -> None:
    impls = data["impls"]
    a, b = impls["floor_a"], impls["floor_b"]
    rows = []
    for name, r in impls.items():
        wall, cpu = r["wall_ms"]["median"], r["cpu_ms_per_fusion"]["median"]
        rows.append(
            [
                name,
                wall,
                r["wall_ms"]["p95"],
                r["wall_ms"]["p99"],
                cpu,
                wall / a["wall_ms"]["median"],
                cpu / a["cpu_ms_per_fusion"]["median"],
                wall / b["wall_ms"]["median"],
                cpu / b["cpu_ms_per_fusion"]["median"],
                r["server_cpu_ms_per_fusion"],
                f"{r['requests_per_fusion']:.0f}",
                f"{r['request_bytes_per_fusion'] / 1024:.1f}",
            ]
        )
    print(
        table(
            [
                "impl",
                "wall p50 ms",
                "p95",
                "p99",
                "client CPU ms",
                "wall/a",
                "CPU/a",
                "wall/b",
                "CPU/b",
                "server CPU ms",
                "requests",
                "KiB sent",
            ],
            rows,
        )
    )
    inproc = data["in_process"]
    floor = inproc["asyncio.gather floor"]["cpu_ms_per_fusion"]["median"]
    print("\nno HTTP: in-process instant models, 8 panelists (the graph's own cost):")
    print(
        table(
            ["impl", "CPU ms/fusion p50", "p95", "wall ms/fusion p50", "CPU minus floor ms"],
            [
                [
                    name,
                    r["cpu_ms_per_fusion"]["median"],
                    r["cpu_ms_per_fusion"]["p95"],
                    r["wall_ms_per_fusion"]["median"],
                    r["cpu_ms_per_fusion"]["median"] - floor,
                ]
                for name, r in inproc.items()
            ],
        )
    )
    prof = data["cprofile_self_ms_per_fusion"]
    names = sorted(
        set(prof["fusion"]) | set(prof["floor_a"]), key=lambda k: -prof["fusion"].get(k, 0)
    )
    rows = [
        [
            k,
            prof["fusion"].get(k, 0.0),
            prof["floor_a"].get(k, 0.0),
            prof["fusion"].get(k, 0.0) - prof["floor_a"].get(k, 0.0),
        ]
        for k in names
        if max(prof["fusion"].get(k, 0.0), prof["floor_a"].get(k, 0.0)) >= 0.05
    ]
    rows.append(
        [
            "total",
            sum(prof["fusion"].values()),
            sum(prof["floor_a"].values()),
            sum(prof["fusion"].values()) - sum(prof["floor_a"].values()),
        ]
    )
    print("\nclient CPU self time by package, ms per fusion (under cProfile, so inflated):")
    print(table(["package", "fusion", "floor_a", "extra"], rows))
    calls = data["python_calls_per_fusion"]
    print(
        "\nPython function calls per fusion (steady under load): "
        + ", ".join(f"{k} {v:,.0f} ({v / calls['floor_a']:.3f}x)" for k, v in calls.items())
    )
    hops = data.get("thread_hops_per_fusion") or {}
    if hops:
        print(
            "worker-thread hand-offs per fusion (loop.run_in_executor): "
            + ", ".join(f"{k} {v:g}" for k, v in hops.items())
        )
    lg = impls.get(FloorALangGraph.name)
    if lg:
        cpu = {k: v["cpu_ms_per_fusion"]["median"] for k, v in impls.items()}
        print(
            f"\nclient CPU over floor (a): {cpu['fusion'] - cpu['floor_a']:.2f} ms per fusion, "
            f"of which LangGraph's orchestration {cpu[FloorALangGraph.name] - cpu['floor_a']:.2f}"
            " ms and langfusion's nodes and models "
            f"{cpu['fusion'] - cpu[FloorALangGraph.name]:.2f} ms"
        )
    ratio = impls["fusion"]["wall_ms"]["median"] / a["wall_ms"]["median"]
    print(
        f"\ntarget: fusion within {TARGET}x of floor (a) (median wall): {ratio:.2f}x -> "
        f"{'met' if ratio <= TARGET else 'MISSED'}"
    )
    print("pyinstrument tree: benchmarks/results/cpu_cost_profile.txt")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=8)
    parser.add_argument("--fusions", type=int, default=25, help="per impl per round")
    parser.add_argument("--profile-fusions", type=int, default=60)
    parser.add_argument(
        "--pool",
        choices=("graph", "sdk"),
        default="graph",
        help="the graph's pool: as graph/models.py builds it, or the SDK's",
    )
    parser.add_argument(
        "--retry-floor",
        action="store_true",
        help=f"also run floor (a) with max_retries=2, as {FLOOR_A_RETRIES}",
    )
    parser.add_argument("--tag", default="", help="suffix of the results file")
    args = parser.parse_args()
    data = asyncio.run(
        main(args.rounds, args.fusions, args.profile_fusions, args.pool, args.retry_floor)
    )
    report(data)
    write_results("cpu_cost" + (f"_{args.tag}" if args.tag else ""), data)
