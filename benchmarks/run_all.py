"""Run every benchmark, one after the other, then draw the plot.

    python -m benchmarks.run_all [--quick]

``--quick`` cuts repeats and counts (a smoke run of about 5 minutes); the
full run takes about 15 minutes on a 2-core machine.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time

FULL: list[list[str]] = [
    ["critical_path"],
    ["cpu_cost", "--retry-floor"],
    # All 500 fusions of a level progress together and end together: on a
    # loaded 2-core machine they need more than the default 60 s.
    ["concurrency", "--repeats", "3", "--budget-s", "120"],
    ["stragglers"],
    ["streaming"],
    ["tokens"],
]
QUICK: list[list[str]] = [
    ["critical_path", "--repeats", "3"],
    ["cpu_cost", "--rounds", "2", "--fusions", "20", "--profile-fusions", "30"],
    ["concurrency", "--levels", "1", "10", "100", "--fusions", "4", "30", "200"],
    ["stragglers", "--timeouts", "1", "--repeats", "2"],
    ["streaming", "--repeats", "3"],
    ["tokens"],
]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    for name, *rest in QUICK if args.quick else FULL:
        print(f"\n=== {name} {' '.join(rest)}", flush=True)
        started = time.perf_counter()
        done = subprocess.run([sys.executable, "-m", f"benchmarks.{name}", *rest])
        print(f"=== {name}: {time.perf_counter() - started:.0f} s", flush=True)
        if done.returncode != 0:
            return done.returncode
    return subprocess.run([sys.executable, "-m", "benchmarks.plot"]).returncode


if __name__ == "__main__":
    sys.exit(main())
