"""What a switch between the two embedded models costs on their one server.

One llama.cpp server serves both embedded models and loads the one a request
names in place of the one held. This sends the same one-token request
``--requests`` times to one model, then as many times alternating between
the two (every request a switch), taking turns round by round, and reports
each mode's median latency; the difference is what a switch costs.

    python -m benchmarks.local_switch --requests 10   # writes benchmarks/results/local_switch.json
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
import urllib.request
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).parent / "results" / "local_switch.json"
MODELS = ("local/smollm2-135m", "local/gemma-3-270m")
_NO_PROXY = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def _ask(url: str, model: str) -> float:
    """Seconds one one-token chat completion to ``model`` takes."""
    message = {"role": "user", "content": "Name a colour."}
    body = json.dumps({"model": model, "messages": [message], "max_tokens": 1}).encode()
    request = urllib.request.Request(
        f"{url}/chat/completions", body, {"Content-Type": "application/json"}
    )
    started = time.perf_counter()
    with _NO_PROXY.open(request, timeout=300) as response:
        json.load(response)
    return time.perf_counter() - started


def run(requests: int) -> dict[str, Any]:
    from langfusion.graph.models.local import LocalModelServer

    with LocalModelServer() as server:
        url = server.ensure_started(MODELS[0])
        server.ensure_started(MODELS[1])  # its file verified before it is asked for
        pid = server.pid
        _ask(url, MODELS[0])  # warm-up
        same: list[float] = []
        switching: list[float] = []
        for _ in range(requests):
            same.append(_ask(url, MODELS[0]))
            # MODELS[0] is held: the other, then back again, is two switches.
            switching.append(_ask(url, MODELS[1]))
            switching.append(_ask(url, MODELS[0]))
        restarted = server.pid != pid
    same_p50 = statistics.median(same)
    switch_p50 = statistics.median(switching)
    return {
        "requests": requests,
        "same_model_p50_s": round(same_p50, 4),
        "switching_p50_s": round(switch_p50, 4),
        "switch_cost_p50_s": round(switch_p50 - same_p50, 4),
        "ratio": round(switch_p50 / same_p50, 2),
        "server_restarted": restarted,
        "same_model_s": [round(s, 4) for s in same],
        "switching_s": [round(s, 4) for s in switching],
    }


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.local_switch")
    parser.add_argument("--requests", type=int, default=10)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    report = run(args.requests)
    args.out.write_text(json.dumps(report, indent=1) + "\n")
    print(json.dumps({k: v for k, v in report.items() if not isinstance(v, list)}, indent=1))


if __name__ == "__main__":
    main()
