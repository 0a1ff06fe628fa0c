"""5. Judge reply to first synthesis token at a caller of ``FusionChatModel.astream``.

The synthesis model streams over the loopback server: 50 ms to its first
token, then a token every 10 ms. Server-side timestamps (the judge's reply
sent, the synthesis request received, its first token written) and the
caller's (each token received) share one clock (``time.monotonic`` is
system-wide on Linux), which splits the gap into:

- graph hop: judge reply sent -> synthesis request received by the server;
- stream path: first token written by the server -> first token at the caller;
- total overhead: judge reply sent -> first token at the caller, less the
  synthesis model's own 50 ms.

A bare ``ChatOpenAI(...).astream`` against the same streaming model is the
floor for the stream path.

    python -m benchmarks.streaming [--repeats 10]
"""

from __future__ import annotations

import argparse
import asyncio
import time
from typing import Any

import httpx

from benchmarks._common import JUDGE, SYNTH, Scenario, spread, summary, table, write_results
from benchmarks.server import ServerProcess

TTFT_S = 0.05
TOKEN_DELAY_S = 0.01


def scenario() -> Scenario:
    return Scenario(
        panel=spread(4, 0.1, 0.2),
        judge_s=0.2,
        synth_s=TTFT_S,
        extra={SYNTH: {"content_chars": 240, "token_delay_s": TOKEN_DELAY_S}},
    )


def _entry(log: list[dict[str, Any]], model: str) -> dict[str, Any]:
    return next(e for e in log if e["model"] == model)


async def fusion_runs(server: ServerProcess, repeats: int) -> list[dict[str, float]]:
    from langchain_core.messages import HumanMessage

    from langfusion.graph import ModelRegistry
    from langfusion.tools import FusionChatModel

    sc = scenario()
    model = FusionChatModel(
        analysis_models=list(sc.panel),
        model=JUDGE,
        synthesis_model=SYNTH,
        model_factory=ModelRegistry(base_url=server.base_url),
    )
    question = [HumanMessage("Where do economists disagree about a carbon tax?")]
    await model.ainvoke(question)  # warm-up
    runs = []
    for _ in range(repeats):
        server.log()
        stamps: list[float] = []
        async for chunk in model.astream(question):
            if chunk.text:
                stamps.append(time.monotonic())
        log = server.log()
        judge, synth = _entry(log, JUDGE), _entry(log, SYNTH)
        runs.append(
            {
                "graph_hop_ms": (synth["arrived"] - judge["finished"]) * 1000,
                "stream_path_ms": (stamps[0] - synth["first_token"]) * 1000,
                "judge_to_first_token_ms": (stamps[0] - judge["finished"]) * 1000,
                "overhead_ms": (stamps[0] - judge["finished"] - TTFT_S) * 1000,
                "tokens": len(stamps),
                "first_to_last_token_ms": (stamps[-1] - stamps[0]) * 1000,
            }
        )
    return runs


async def floor_runs(server: ServerProcess, repeats: int) -> list[dict[str, float]]:
    from langchain_openai import ChatOpenAI

    model = ChatOpenAI(
        model=SYNTH,
        base_url=server.base_url,
        api_key="sk-bench-not-a-real-key",  # type: ignore[arg-type]
        max_retries=0,
        timeout=httpx.Timeout(60.0, connect=10.0),
        stream_usage=True,
    )
    await model.ainvoke("warm-up")
    runs = []
    for _ in range(repeats):
        server.log()
        sent = time.monotonic()
        stamps = [time.monotonic() async for chunk in model.astream("question") if chunk.text]
        synth = _entry(server.log(), SYNTH)
        runs.append(
            {
                "request_ms": (synth["arrived"] - sent) * 1000,
                "stream_path_ms": (stamps[0] - synth["first_token"]) * 1000,
                "tokens": len(stamps),
                "first_to_last_token_ms": (stamps[-1] - stamps[0]) * 1000,
            }
        )
    return runs


async def main(repeats: int) -> dict[str, Any]:
    sc = scenario()
    with ServerProcess() as server:
        server.configure(sc.server_models(), record=True)
        fusion = await fusion_runs(server, repeats)
        floor = await floor_runs(server, repeats)
    keys = (
        "graph_hop_ms",
        "stream_path_ms",
        "judge_to_first_token_ms",
        "overhead_ms",
        "first_to_last_token_ms",
    )
    return {
        "synthesis_ttft_s": TTFT_S,
        "token_delay_s": TOKEN_DELAY_S,
        "repeats": repeats,
        "fusion": {k: summary([r[k] for r in fusion]) for k in keys},
        "fusion_tokens": fusion[0]["tokens"],
        "floor": {
            k: summary([r[k] for r in floor])
            for k in ("request_ms", "stream_path_ms", "first_to_last_token_ms")
        },
        "floor_tokens": floor[0]["tokens"],
    }


def report(data: dict[str, Any]) -> None:
    f, b = data["fusion"], data["floor"]
    rows = [
        ["judge reply -> synthesis request at server (graph hop)", f["graph_hop_ms"], None],
        [
            "server first token -> caller first token (stream path)",
            f["stream_path_ms"],
            b["stream_path_ms"],
        ],
        ["judge reply -> caller first token", f["judge_to_first_token_ms"], None],
        [
            f"  of which overhead (less the model's {data['synthesis_ttft_s'] * 1000:.0f} ms)",
            f["overhead_ms"],
            None,
        ],
        ["caller first -> last token", f["first_to_last_token_ms"], b["first_to_last_token_ms"]],
    ]
    print(
        table(
            ["ms", "fusion p50", "p95", "max", "bare ChatOpenAI p50", "p95"],
            [
                [
                    name,
                    s["median"],
                    s["p95"],
                    s["max"],
                    *((t["median"], t["p95"]) if t else ("", "")),
                ]
                for name, s, t in rows
            ],
        )
    )
    print(f"tokens at the caller: fusion {data['fusion_tokens']}, bare {data['floor_tokens']}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=10)
    args = parser.parse_args()
    data = asyncio.run(main(args.repeats))
    report(data)
    write_results("streaming", data)
