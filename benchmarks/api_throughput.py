"""The HTTP API's throughput against the graph in process, and its memory per request in flight.

One run, one scripted upstream (its own process; each panel, judge and
synthesis call answers after ``--latency`` seconds): ``--fusions`` alias
fusions (two panelists, a judge, a synthesis) with ``--in-flight`` of them
at a time (a closed loop), first through ``langfusion serve`` (its own
process, one worker) over HTTP, then by calling the graph in this process.
The ratio is API throughput over in-process throughput. Memory: the
server's RSS with ``--in-flight`` requests held open by a slow panel, less
its RSS when warm and idle, per request.

    python -m benchmarks.api_throughput [--fusions 300] [--in-flight 100] [--latency 0.05]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import time
from typing import Any

import httpx
import psutil

from benchmarks._common import write_results

TOKEN = "lf-bench-token"
PANEL = ["bench/p1", "bench/p2"]
QUESTION = "What would falsify the efficient-market hypothesis?"
UPSTREAM = """
import sys, time
from tests.fakes import verdict
from tests.openai_server import OpenAIServer
latency, slow = float(sys.argv[1]), float(sys.argv[2])
server = OpenAIServer().start()
for slug in ("bench/p1", "bench/p2"):
    server.script(slug, "A panel answer about the question.", latency_s=latency)
server.script("bench/slow", "A slow answer.", latency_s=slow)
server.script("bench/judge", verdict(), latency_s=latency)
server.script("bench/synth", "The synthesis.", latency_s=latency)
print(server.base_url, flush=True)
while True:
    time.sleep(3600)
"""


def start_upstream(latency: float, slow: float) -> tuple[subprocess.Popen[str], str]:
    process = subprocess.Popen(
        [sys.executable, "-c", UPSTREAM, str(latency), str(slow)],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None
    return process, process.stdout.readline().strip()


def start_api(base_url: str, port: int) -> subprocess.Popen[str]:
    env = {
        **os.environ,
        "OPENROUTER_API_KEY": "sk-or-v1-bench-0123456789",
        "OPENROUTER_BASE_URL": base_url,
        "LANGFUSION_API_KEYS": TOKEN,
        "XDG_STATE_HOME": f"/tmp/lf-bench-{port}",
    }
    command = [
        sys.executable, "-m", "langfusion.tools.cli", "serve", "--port", str(port),
        "--models", ",".join(PANEL), "--judge", "bench/judge", "--synthesis-model",
        "bench/synth", "--no-web", "--max-retries", "0",
    ]  # fmt: skip
    process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            httpx.get(f"http://127.0.0.1:{port}/", timeout=1, trust_env=False)
            return process
        except httpx.HTTPError:
            time.sleep(0.1)
    process.kill()
    raise RuntimeError("langfusion serve did not start")


async def closed_loop(total: int, in_flight: int, one: Any) -> float:
    """Run ``total`` calls of ``one`` with ``in_flight`` at a time; return fusions per second."""
    left = total

    async def worker() -> None:
        nonlocal left
        while left > 0:
            left -= 1
            await one()

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(in_flight)))
    return total / (time.perf_counter() - started)


def body(panel: list[str]) -> dict[str, Any]:
    return {
        "model": "openrouter/fusion",
        "messages": [
            {"role": "user", "content": "What would falsify the efficient-market hypothesis?"}
        ],
        "plugins": [{"id": "fusion", "analysis_models": panel}],
    }


async def through_api(port: int, total: int, in_flight: int) -> float:
    limits = httpx.Limits(max_connections=in_flight + 10)
    headers = {"authorization": f"Bearer {TOKEN}"}
    async with httpx.AsyncClient(
        base_url=f"http://127.0.0.1:{port}/api/v1", headers=headers, limits=limits,
        timeout=120, trust_env=False,
    ) as client:  # fmt: skip

        async def one() -> None:
            response = await client.post("/chat/completions", json=body(PANEL))
            response.raise_for_status()

        await closed_loop(in_flight, in_flight, one)  # warm-up
        return await closed_loop(total, in_flight, one)


async def in_process(base_url: str, total: int, in_flight: int) -> float:
    from langchain_core.messages import HumanMessage

    from langfusion.graph import FusionContext, FusionResult, ModelRegistry, build_fusion_graph

    os.environ["OPENROUTER_API_KEY"] = "sk-or-v1-bench-0123456789"
    graph = build_fusion_graph(model_factory=ModelRegistry(base_url=base_url))
    context = FusionContext(
        analysis_models=PANEL,
        model="bench/judge",
        synthesis_model="bench/synth",
        web_tools=False,
        max_retries=0,
    )

    async def one() -> None:
        out = await graph.ainvoke({"messages": [HumanMessage(QUESTION)]}, context=context)
        assert FusionResult.model_validate(out["result"]).status == "ok"

    await closed_loop(in_flight, in_flight, one)
    return await closed_loop(total, in_flight, one)


async def memory_per_request(port: int, pid: int, in_flight: int) -> dict[str, float]:
    server = psutil.Process(pid)
    idle = server.memory_info().rss
    headers = {"authorization": f"Bearer {TOKEN}"}
    limits = httpx.Limits(max_connections=in_flight + 10)
    async with httpx.AsyncClient(
        base_url=f"http://127.0.0.1:{port}/api/v1", headers=headers, limits=limits,
        timeout=120, trust_env=False,
    ) as client:  # fmt: skip
        held = [
            asyncio.ensure_future(client.post("/chat/completions", json=body(["bench/slow"])))
            for _ in range(in_flight)
        ]
        peak = idle
        while not all(task.done() for task in held):
            peak = max(peak, server.memory_info().rss)
            await asyncio.sleep(0.05)
    return {
        "idle_rss_mb": idle / 2**20,
        "peak_rss_mb": peak / 2**20,
        "kb_per_request": (peak - idle) / 1024 / in_flight,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fusions", type=int, default=300)
    parser.add_argument("--in-flight", type=int, default=100)
    parser.add_argument("--latency", type=float, default=0.05)
    parser.add_argument("--hold", type=float, default=3.0, help="slow panel's latency (memory)")
    args = parser.parse_args()
    upstream, base_url = start_upstream(args.latency, args.hold)
    port = 18000 + os.getpid() % 1000
    api = start_api(base_url, port)
    try:
        api_rate = asyncio.run(through_api(port, args.fusions, args.in_flight))
        memory = asyncio.run(memory_per_request(port, api.pid, args.in_flight))
        graph_rate = asyncio.run(in_process(base_url, args.fusions, args.in_flight))
    finally:
        api.terminate()
        upstream.terminate()
    results = {
        "fusions": args.fusions,
        "in_flight": args.in_flight,
        "latency_s": args.latency,
        "api_fusions_per_s": round(api_rate, 2),
        "in_process_fusions_per_s": round(graph_rate, 2),
        "ratio_api_over_in_process": round(api_rate / graph_rate, 3),
        "memory": {k: round(v, 1) for k, v in memory.items()},
    }
    print(json.dumps(results, indent=2))
    write_results("api_throughput", results)


if __name__ == "__main__":
    main()
