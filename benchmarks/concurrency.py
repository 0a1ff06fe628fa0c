"""3. Many fusions in flight at once: throughput, overhead, memory, connections.

For each level (1, 10, 100, 500 fusions in flight) and each implementation
(the graph, floor (a), floor (b)), a fresh client process keeps that many
fusions in flight (a closed loop: each finished fusion starts the next)
until it has run a fixed number of them. Every fusion has 8 panelists
answering in 100 to 300 ms, a 100 ms judge and a 100 ms synthesis: a
critical path of 500 ms. The server runs in its own process; its CPU use is
reported so that a saturated server shows. Each client process has a time
budget: past it, the fusions still running are cancelled and the run
reports what completed (``budget_exhausted``).

Per run: throughput, p50/p99 of (fusion latency - critical path), client
CPU per fusion, peak RSS and its growth over the warmed-up baseline, and the
peak number of open client sockets (the client's socket descriptors; it
talks to no one but the server), cross-checked after the run against the
established connections to the server port in ``/proc/net/tcp``. Pool limits:
the graph's own (512 connections), the SDK default for floor (a) (1000),
1000 for floor (b).

``--pool sdk`` runs the graph on ``openai.DefaultAsyncHttpxClient`` (see
``_common.use_sdk_pool``), to measure that change to ``graph/models.py``.

With ``--repeats n`` the implementations alternate n times per level and the
table shows, per level and implementation, the run of median throughput
(every run, with the load average before and after it, is in the JSON).

    python -m benchmarks.concurrency [--levels 1 10 100 500] [--fusions 8 50 250 500]
        [--repeats 3]
    python -m benchmarks.concurrency --pool sdk --impls fusion --tag sdk-pool
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from benchmarks._common import (
    IMPLS,
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

LEVELS = (1, 10, 100, 500)
FUSIONS = (8, 50, 250, 500)
TARGET = 0.85


def scenario() -> Scenario:
    return Scenario(panel=spread(8, 0.1, 0.3), judge_s=0.1, synth_s=0.1, answer_chars=400)


class Sampler(threading.Thread):
    """Peak RSS and peak open client sockets, every ``interval`` seconds.

    The client process talks to no one but the server, so its socket file
    descriptors, less those it had before the run (the event loop's own
    socketpair), are its connections to the server port. Reading its own
    ``/proc/self/fd`` is far cheaper than scanning ``/proc/net/tcp`` (which
    lists every socket on the machine) and so disturbs the run less.
    """

    def __init__(self, status_path: str, interval: float = 0.1) -> None:
        super().__init__(daemon=True)
        self.interval = interval
        # Written once a second, so that a client stuck past its budget still
        # tells how far it got.
        self.status_path = status_path
        self.completed = 0
        self.started_at = time.perf_counter()
        self.page = os.sysconf("SC_PAGE_SIZE")
        self.base_sockets = self.sockets()
        self.peak_rss = 0
        self.peak_sockets = 0
        self.stopping = threading.Event()

    @staticmethod
    def sockets() -> int:
        count = 0
        for fd in os.listdir("/proc/self/fd"):
            try:
                count += os.readlink(f"/proc/self/fd/{fd}").startswith("socket:")
            except OSError:
                continue
        return count

    def rss(self) -> int:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * self.page

    def run(self) -> None:
        ticks = 0
        while not self.stopping.is_set():
            self.peak_rss = max(self.peak_rss, self.rss())
            self.peak_sockets = max(self.peak_sockets, self.sockets() - self.base_sockets)
            ticks += 1
            if ticks % 10 == 0:
                self.write_status()
            self.stopping.wait(self.interval)

    def write_status(self) -> None:
        status = {
            "completed": self.completed,
            "seconds": time.perf_counter() - self.started_at,
            "peak_rss_mb": self.peak_rss / 2**20,
            "peak_client_sockets": self.peak_sockets,
        }
        Path(self.status_path).write_text(json.dumps(status))


def server_sockets(port: int) -> int:
    """Established connections to ``port`` on this machine, from ``/proc/net/tcp``."""
    suffix = f":{port:04X}"
    count = 0
    for table_path in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(table_path) as f:
                next(f)
                count += sum(
                    1
                    for line in f
                    if (fields := line.split())[2].endswith(suffix) and fields[3] == "01"
                )
        except FileNotFoundError:
            continue
    return count


async def worker(
    impl_name: str,
    level: int,
    total: int,
    base_url: str,
    bodies_path: str,
    budget_s: float,
    pool: str,
    status_path: str,
) -> None:
    sampler = Sampler(status_path)  # before any connection: its socket baseline
    if pool == "sdk":
        use_sdk_pool()
    sc = scenario()
    bodies = json.loads(Path(bodies_path).read_text()) if impl_name == "floor_b" else None
    impl = make(impl_name, base_url, sc, bodies)
    await impl.check()
    await asyncio.gather(*(impl.run() for _ in range(min(level, 20))))
    baseline = sampler.rss()
    latencies: list[float] = []
    errors: list[str] = []
    launched = 0

    async def loop() -> None:
        nonlocal launched
        while launched < total:
            launched += 1
            t0 = time.perf_counter()
            try:
                out = await impl.run()
            except Exception as exc:  # noqa: BLE001 - counted and reported
                errors.append(f"{type(exc).__name__}: {exc}"[:200])
                continue
            if isinstance(out, dict) and out["result"]["status"] != "ok":
                errors.append(str(out["result"]["failure_reason"]))
                continue
            latencies.append(time.perf_counter() - t0)
            sampler.completed += 1

    sampler.started_at = time.perf_counter()
    sampler.start()
    cpu0 = time.process_time()
    t0 = time.perf_counter()
    loops = [asyncio.ensure_future(loop()) for _ in range(level)]
    done, pending = await asyncio.wait(loops, timeout=budget_s)
    for task in pending:
        task.cancel()
    await asyncio.gather(*pending, return_exceptions=True)
    wall = time.perf_counter() - t0
    cpu = time.process_time() - cpu0
    sampler.stopping.set()
    sampler.join()
    # Cross-check of the socket count: connections to the server port still
    # open after the run (idle keep-alive ones, in the pool).
    pooled = server_sockets(int(base_url.rsplit(":", 1)[1].split("/")[0]))
    await impl.close()
    peak = max(sampler.peak_rss, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)
    cp = sc.critical_path_s
    print(
        json.dumps(
            {
                "impl": impl_name,
                "pool": pool,
                "level": level,
                "fusions": total,
                "completed": len(latencies),
                "budget_s": budget_s,
                "budget_exhausted": bool(pending),
                "errors": len(errors),
                "error_samples": errors[:3],
                "wall_s": wall,
                "throughput_per_s": len(latencies) / wall,
                "ideal_throughput_per_s": level / cp,
                "overhead_ms": summary([(v - cp) * 1000 for v in latencies]),
                "latency_s": summary(latencies),
                "client_cpu_ms_per_fusion": cpu * 1000 / max(1, len(latencies)),
                "client_cpu_utilisation": cpu / wall,
                "peak_rss_mb": peak / 2**20,
                "rss_growth_mb": (sampler.peak_rss - baseline) / 2**20,
                "peak_client_sockets": sampler.peak_sockets,
                "pooled_sockets_after_run": pooled,
            }
        )
    )


def run_level(
    server: ServerProcess,
    impl: str,
    level: int,
    total: int,
    bodies: str,
    budget_s: float,
    pool: str,
) -> dict[str, Any]:
    import psutil

    proc = psutil.Process(server.pid)
    server_cpu0 = sum(proc.cpu_times()[:2])
    load_before = round(os.getloadavg()[0], 2)
    status = Path(bodies).with_name(f"status-{impl}-{level}.json")
    t0 = time.perf_counter()
    command = [
        sys.executable,
        "-m",
        "benchmarks.concurrency",
        "--worker",
        impl,
        str(level),
        str(total),
        server.base_url,
        bodies,
        str(budget_s),
        pool,
        str(status),
    ]
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=budget_s + 60)
    except subprocess.TimeoutExpired:
        # Stuck past its budget: even cancelling its fusions did not finish.
        last = json.loads(status.read_text()) if status.exists() else {}
        return {
            "impl": impl,
            "pool": pool,
            "level": level,
            "fusions": total,
            "stuck": True,
            "budget_s": budget_s,
            "budget_exhausted": True,
            "completed": last.get("completed", 0),
            "wall_s": last.get("seconds", float("nan")),
            "throughput_per_s": last.get("completed", 0) / last.get("seconds", float("inf")),
            "ideal_throughput_per_s": level / scenario().critical_path_s,
            "peak_rss_mb": last.get("peak_rss_mb", float("nan")),
            "peak_client_sockets": last.get("peak_client_sockets", 0),
            "server_cpu_utilisation": (sum(proc.cpu_times()[:2]) - server_cpu0)
            / (time.perf_counter() - t0),
        }
    wall = time.perf_counter() - t0
    if done.returncode != 0:
        raise SystemExit(f"{impl} at {level} failed:\n{done.stderr[-3000:]}")
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    # The server's share of one core over the worker's whole life (start-up included).
    result["server_cpu_utilisation"] = (sum(proc.cpu_times()[:2]) - server_cpu0) / wall
    # Other work on the machine during this slice: compare before trusting a ratio.
    result["load_average_1_before_after"] = [load_before, round(os.getloadavg()[0], 2)]
    return result


def main(
    levels: list[int],
    fusions: list[int],
    impls: list[str],
    budget_s: float,
    pool: str,
    repeats: int = 1,
) -> dict[str, Any]:
    every: list[dict[str, Any]] = []
    with ServerProcess() as server, tempfile.TemporaryDirectory() as tmp:
        sc = scenario()
        bodies = Path(tmp) / "bodies.json"
        bodies.write_text(json.dumps(asyncio.run(capture_bodies(server, sc))))
        server.configure(sc.server_models())
        for level, total in zip(levels, fusions, strict=True):
            # Implementations alternate within a level, so a burst of other
            # work on the machine lands on all of them rather than on one.
            for repeat in range(repeats):
                for impl in impls:
                    result = run_level(server, impl, level, total, str(bodies), budget_s, pool)
                    result["repeat"] = repeat
                    every.append(result)
                    print(
                        f"{impl} x{level}: {result['completed']}/{total} in "
                        f"{result['wall_s']:.1f}s, {result['throughput_per_s']:.1f}/s "
                        f"(load {result.get('load_average_1_before_after')})",
                        flush=True,
                    )
    return {
        "critical_path_s": scenario().critical_path_s,
        "latencies_s": list(scenario().panel.values()),
        "graph_pool": pool,
        "repeats": repeats,
        "target_throughput_vs_floor_a_at_100": TARGET,
        "runs": median_runs(every),
        "all_runs": every,
    }


def median_runs(every: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per (level, implementation), the repeat with the median throughput."""
    groups: dict[tuple[int, str], list[dict[str, Any]]] = {}
    for run in every:
        groups.setdefault((run["level"], run["impl"]), []).append(run)
    chosen = []
    for group in groups.values():
        ordered = sorted(group, key=lambda r: r["throughput_per_s"])
        chosen.append({**ordered[(len(ordered) - 1) // 2], "repeats": len(group)})
    return chosen


def report(data: dict[str, Any]) -> None:
    by = {(r["impl"], r["level"]): r for r in data["runs"]}
    rows = []
    for r in data["runs"]:
        a = by.get(("floor_a", r["level"]), {})
        if r.get("stuck"):
            rows.append(
                [
                    r["level"],
                    r["impl"],
                    f"{r['completed']}/{r['fusions']} (stuck past budget + 60 s)",
                    r["throughput_per_s"],
                    "",
                    "",
                    "",
                    "",
                    r["peak_rss_mb"],
                    "",
                    r["peak_client_sockets"],
                    r["server_cpu_utilisation"],
                    "",
                ]
            )
            continue
        rows.append(
            [
                r["level"],
                r["impl"],
                f"{r['completed']}/{r['fusions']}" + (" (budget)" if r["budget_exhausted"] else ""),
                r["throughput_per_s"],
                r["throughput_per_s"] / a["throughput_per_s"] if a.get("throughput_per_s") else "",
                r["overhead_ms"]["median"],
                r["overhead_ms"]["p99"],
                r["client_cpu_ms_per_fusion"],
                r["peak_rss_mb"],
                r["rss_growth_mb"],
                r["peak_client_sockets"],
                r["server_cpu_utilisation"],
                r["errors"],
            ]
        )
    print(
        table(
            [
                "in flight",
                "impl",
                "done",
                "fusions/s",
                "vs a",
                "overhead p50 ms",
                "p99 ms",
                "CPU ms/fusion",
                "peak RSS MB",
                "RSS growth MB",
                "sockets",
                "server CPU",
                "errors",
            ],
            rows,
        )
    )
    f, a = by.get(("fusion", 100)), by.get(("floor_a", 100))
    if f and a and a["throughput_per_s"]:
        ratio = f["throughput_per_s"] / a["throughput_per_s"]
        print(
            f"\ntarget: throughput at 100 in flight >= {TARGET}x floor (a): {ratio:.2f}x -> "
            f"{'met' if ratio >= TARGET else 'MISSED'}"
        )


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--worker":
        impl, level, total, url, bodies, budget, pool, status = sys.argv[2:10]
        asyncio.run(worker(impl, int(level), int(total), url, bodies, float(budget), pool, status))
        sys.exit(0)
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--levels", type=int, nargs="+", default=list(LEVELS))
    parser.add_argument("--fusions", type=int, nargs="+", default=list(FUSIONS))
    parser.add_argument("--impls", nargs="+", default=list(IMPLS), choices=IMPLS)
    parser.add_argument("--budget-s", type=float, default=60.0, help="per client process")
    parser.add_argument(
        "--repeats", type=int, default=1, help="runs per level and implementation, alternating"
    )
    parser.add_argument(
        "--pool",
        choices=("graph", "sdk"),
        default="graph",
        help="the graph's pool: as graph/models.py builds it, or the SDK's",
    )
    parser.add_argument("--tag", default="", help="suffix of the results file")
    args = parser.parse_args()
    data = main(args.levels, args.fusions, args.impls, args.budget_s, args.pool, args.repeats)
    write_results("concurrency" + (f"_{args.tag}" if args.tag else ""), data)
    report(data)
