"""Soak: many fusions at once on one compiled graph, against a server that injects faults.

Every fusion draws its panel, judge and synthesis from the fault kinds of
``benchmarks/fault_server.py`` (in a process of its own, on 127.0.0.1), so the
reason each failure must report is known in advance. The run reports results
by status and reason, how often the reported reason is the injected fault's,
exceptions that escaped, memory across rounds, descriptors, sockets, tasks
and threads before and after, and every place a canary API key turned up:
results, exceptions, log records (DEBUG on, for every library) and errors
handed to callbacks. Bounded in count and time; nothing leaves the machine.

    python -m benchmarks.soak                 # 600 fusions, 120 in flight, 4 rounds
    python -m benchmarks.soak --fusions 100 --in-flight 50 --rounds 2
"""

from __future__ import annotations

import os

CANARY = "sk-or-v1-CANARY" + "c0ffee42" * 6
# Before anything imports langsmith or the models: they read these once.
os.environ["OPENROUTER_API_KEY"] = CANARY
os.environ["LANGSMITH_TRACING"] = "false"
for _name in ("LANGCHAIN_TRACING_V2", "LANGCHAIN_TRACING", "OPENROUTER_BASE_URL"):
    os.environ.pop(_name, None)

import argparse  # noqa: E402
import asyncio  # noqa: E402
import gc  # noqa: E402
import json  # noqa: E402
import logging  # noqa: E402
import platform  # noqa: E402
import random  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import threading  # noqa: E402
import time  # noqa: E402
import traceback  # noqa: E402
import urllib.request  # noqa: E402
from collections import Counter  # noqa: E402
from dataclasses import dataclass, field  # noqa: E402
from importlib.metadata import version  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"
QUESTION = "Where do economists disagree about the growth effects of a carbon tax?"
# Generous, so that what the load alone costs (2 cores, over a hundred fusions at
# once) is not a deadline; a hang still ends at it. Whether a deadline did cut an
# attempt in flight, the server says (a timeout is the truth then).
PANEL_TIMEOUT_S = 20.0

# What each panel kind must be reported as: (failure_reason, status_code); None = answers.
PANEL_EXPECTED: dict[str, tuple[str, int | None] | None] = {
    "ok": None,
    "429-once": None,
    "429": ("rate_limited", 429),
    "429-retry-after": ("rate_limited", 429),
    "429-beyond-deadline": ("rate_limited", 429),
    "429-slow": ("rate_limited", 429),
    "500": ("upstream_error", 500),
    "502": ("upstream_error", 502),
    "503": ("upstream_error", 503),
    "401": ("unauthorized", 401),
    "402": ("insufficient_credits", 402),
    "403": ("forbidden", 403),
    "404": ("model_not_found", 404),
    "reset": ("connection_error", None),
    "hang": ("timeout", None),
    "truncated": ("connection_error", None),
    "malformed": ("upstream_error", 200),
    "error-body": ("upstream_error", 200),
    "empty": ("empty_completion", None),
}
JUDGE_EXPECTED = {
    "judge-ok": None,
    "judge-prose": "judge_not_valid_json",
    "judge-schema": "judge_schema_mismatch",
    "judge-500": "judge_upstream_error",
}
SYNTH_EXPECTED = {
    "synth-ok": None,
    "synth-cut-once": None,
    "synth-cut": "synthesis_failed",
    "synth-error-event": "synthesis_failed",
    "synth-empty": "synthesis_failed",
}
PANEL_WEIGHTS = {"ok": 50, "429-once": 5} | {
    k: 3 for k in PANEL_EXPECTED if k not in ("ok", "429-once")
}
JUDGE_WEIGHTS = {"judge-ok": 82, "judge-prose": 6, "judge-schema": 6, "judge-500": 6}
SYNTH_WEIGHTS = {
    "synth-ok": 72,
    "synth-cut-once": 8,
    "synth-cut": 6,
    "synth-error-event": 7,
    "synth-empty": 7,
}


# (model, fusion index) -> whether the server saw the client cut its last attempt in flight
Calls = dict[tuple[str, int], bool]


@dataclass
class Plan:
    """One fusion's models, and what its result must say."""

    index: int
    panel: list[str]
    judge: str
    synth: str

    @staticmethod
    def kind(slug: str) -> str:
        return slug.removeprefix("soak/").split("#", 1)[0]

    def expected_panel(self, slug: str, cut: Calls) -> tuple[str, int | None] | None:
        if cut.get((slug, self.index), False):
            return "timeout", None
        return PANEL_EXPECTED[self.kind(slug)]

    def expected_run(self, cut: Calls) -> tuple[str, str | None]:
        failures = [self.expected_panel(s, cut) for s in self.panel]
        if all(f is not None for f in failures):
            reasons = {f[0] for f in failures if f is not None}
            if reasons == {"rate_limited"}:
                return "error", "rate_limited"
            if reasons == {"insufficient_credits"}:
                return "error", "insufficient_credits"
            return "error", "all_panels_failed"
        synth = SYNTH_EXPECTED[self.kind(self.synth)]
        if cut.get((self.synth, self.index), False):
            synth = "synthesis_failed"
        judge = JUDGE_EXPECTED[self.kind(self.judge)]
        if cut.get((self.judge, self.index), False):
            judge = "judge_upstream_error"
        return "ok", synth or judge


def draw(index: int, rng: random.Random) -> Plan:
    roll = rng.random()
    if roll < 0.04:
        kinds = ["429", "429-retry-after", "429-slow"]  # every panelist rate limited
    elif roll < 0.06:
        kinds = ["402"] * 3
    else:
        kinds = rng.choices(list(PANEL_WEIGHTS), weights=list(PANEL_WEIGHTS.values()), k=3)
    panel = [f"soak/{kind}#{slot}" for slot, kind in enumerate(kinds)]
    judge = rng.choices(list(JUDGE_WEIGHTS), weights=list(JUDGE_WEIGHTS.values()))[0]
    synth = rng.choices(list(SYNTH_WEIGHTS), weights=list(SYNTH_WEIGHTS.values()))[0]
    return Plan(index, panel, f"soak/{judge}", f"soak/{synth}")


class CanaryLog(logging.Handler):
    """Counts log records, and the ones that quote the canary key."""

    def __init__(self) -> None:
        super().__init__(level=logging.DEBUG)
        self.records = 0
        self.leaks: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records += 1
        try:
            text = record.getMessage()
        except Exception:  # noqa: BLE001 - a record that cannot format is still scanned
            text = f"{record.msg!r} {record.args!r}"
        if record.exc_info:
            text += "".join(traceback.format_exception(*record.exc_info))
        if CANARY in text or CANARY[:20] in text:
            self.leaks.append(f"{record.name}: {text[:300]}")


def _callbacks() -> Any:
    from langchain_core.callbacks import AsyncCallbackHandler

    class CanaryCallbacks(AsyncCallbackHandler):
        """Counts errors handed to callbacks (what a tracer records), and canary leaks."""

        def __init__(self) -> None:
            self.errors = 0
            self.leaks: list[str] = []

        def _scan(self, error: BaseException) -> None:
            self.errors += 1
            text = repr(error) + "".join(traceback.format_exception(error))
            if CANARY in text or CANARY[:20] in text:
                self.leaks.append(text[:300])

        async def on_llm_error(self, error: BaseException, **kwargs: Any) -> None:
            self._scan(error)

        async def on_chain_error(self, error: BaseException, **kwargs: Any) -> None:
            self._scan(error)

        async def on_tool_error(self, error: BaseException, **kwargs: Any) -> None:
            self._scan(error)

        async def on_retry(self, retry_state: Any, **kwargs: Any) -> None:
            outcome = getattr(retry_state, "outcome", None)
            if outcome is not None and outcome.exception() is not None:
                self._scan(outcome.exception())

    return CanaryCallbacks()


@dataclass
class Tally:
    """Everything the soak counts."""

    runs: Counter[str] = field(default_factory=Counter)
    panel: dict[str, Counter[str]] = field(default_factory=dict)
    run_agree: int = 0
    run_mismatch: list[str] = field(default_factory=list)
    panel_agree: int = 0
    panel_total: int = 0
    status_agree: int = 0
    answer_exact: int = 0
    answers_expected: int = 0
    retried_streams: int = 0
    escaped: list[str] = field(default_factory=list)
    result_leaks: int = 0
    in_flight: int = 0
    max_in_flight: int = 0
    cut_backoffs: int = 0
    done: list[tuple[Plan, Summary]] = field(default_factory=list)


def _resources() -> dict[str, int]:
    import psutil

    fds = os.listdir("/proc/self/fd")
    sockets = 0
    for fd in fds:
        try:
            sockets += os.readlink(f"/proc/self/fd/{fd}").startswith("socket:")
        except OSError:
            pass
    return {
        "rss_mb": round(psutil.Process().memory_info().rss / 2**20),
        "fds": len(fds),
        "sockets": sockets,
        "tasks": len(asyncio.all_tasks()),
        "threads": threading.active_count(),
    }


async def one_fusion(graph: Any, plan: Plan, callbacks: Any, tally: Tally) -> None:
    from langchain_core.messages import HumanMessage

    from langfusion.graph import FusionContext, FusionResult

    context = FusionContext(
        analysis_models=plan.panel,
        model=plan.judge,
        synthesis_model=plan.synth,
        web_tools=False,
        timeout_s=PANEL_TIMEOUT_S,
        judge_timeout_s=30.0,
        synthesis_timeout_s=30.0,
    )
    tokens: dict[str, list[str]] = {}
    final: dict[str, Any] = {}
    tally.in_flight += 1
    tally.max_in_flight = max(tally.max_in_flight, tally.in_flight)
    try:
        async for mode, payload in graph.astream(
            {"messages": [HumanMessage(f"[fusion {plan.index}] {QUESTION}")]},
            {"callbacks": [callbacks]},
            context=context,
            stream_mode=["messages", "values"],
        ):
            if mode == "messages":
                chunk, meta = payload
                if meta.get("langgraph_node") == "synthesize" and chunk.text:
                    tokens.setdefault(str(chunk.id), []).append(chunk.text)
            else:
                final = payload
    except BaseException as exc:  # noqa: BLE001 - counted: the soak's first number
        tally.escaped.append(f"{type(exc).__name__}: {str(exc)[:200]}")
        if isinstance(exc, asyncio.CancelledError):
            raise
        return
    finally:
        tally.in_flight -= 1
    if final.get("result") is None:
        tally.escaped.append(f"fusion {plan.index}: no result")
        return
    result = FusionResult.model_validate(final["result"])
    # Checked at the end, against what the server saw; kept small so that the
    # soak's own bookkeeping does not show as the library's memory.
    answer = final.get("answer", "")
    seen = result.to_json() + answer + "".join("".join(t) for t in tokens.values())
    tally.result_leaks += CANARY in seen or CANARY[:20] in seen
    summary = Summary(
        status=result.status,
        failure_reason=result.failure_reason,
        failed={
            f.model: (f.failure_reason, f.status_code, "retries stopped by the" in f.error)
            for f in result.failed_models
        },
        answer=answer,
        last_stream="".join(list(tokens.values())[-1]) if tokens else "",
        streams=len(tokens),
    )
    tally.done.append((plan, summary))


@dataclass
class Summary:
    """What the soak checks of one fusion's result."""

    status: str
    failure_reason: str | None
    failed: dict[str, tuple[str, int | None, bool]]
    answer: str
    last_stream: str
    streams: int


def check(plan: Plan, result: Summary, tally: Tally, cut: Calls) -> None:
    from benchmarks.fault_server import SYNTHESIS_ANSWER

    answer = result.answer
    tally.runs[f"{result.status} / {result.failure_reason or '-'}"] += 1
    expected = plan.expected_run(cut)
    if (result.status, result.failure_reason) == expected:
        tally.run_agree += 1
    elif len(tally.run_mismatch) < 20:
        kinds = [Plan.kind(s) for s in (*plan.panel, plan.judge, plan.synth)]
        got = (result.status, result.failure_reason)
        tally.run_mismatch.append(f"{kinds}: expected {expected}, got {got}")
    for slug in plan.panel:
        kind = Plan.kind(slug)
        want = plan.expected_panel(slug, cut)
        got = result.failed.get(slug)
        tally.cut_backoffs += got is not None and got[2]
        tally.panel.setdefault(kind, Counter())[got[0] if got else "answered"] += 1
        tally.panel_total += 1
        if want is None:
            tally.panel_agree += got is None
            tally.status_agree += got is None
        elif got is not None:
            tally.panel_agree += got[0] == want[0]
            tally.status_agree += got[1] == want[1]
    if expected == ("ok", None) or expected[1] in JUDGE_EXPECTED.values():
        if SYNTH_EXPECTED[Plan.kind(plan.synth)] is None and result.status == "ok":
            tally.answers_expected += 1
            tally.answer_exact += answer == SYNTHESIS_ANSWER == result.last_stream
            tally.retried_streams += result.streams > 1


class FaultServer:
    """``benchmarks/fault_server.py`` in a child process."""

    def __enter__(self) -> FaultServer:
        script = Path(__file__).with_name("fault_server.py")
        self.process = subprocess.Popen(
            [sys.executable, str(script)], stdout=subprocess.PIPE, text=True
        )
        assert self.process.stdout is not None
        line = self.process.stdout.readline()
        if not line.strip().isdigit():
            self.process.kill()
            raise RuntimeError(f"the fault server did not start: {line!r}")
        self.port = int(line)
        self.base_url = f"http://127.0.0.1:{self.port}/v1"
        return self

    def calls(self) -> Calls:
        url = f"http://127.0.0.1:{self.port}/_calls"
        with urllib.request.urlopen(url, timeout=30) as r:
            return {(m, n): bool(seen["last_cut"]) for m, n, seen in json.load(r)}

    def stats(self) -> dict[str, int]:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/_stats", timeout=10) as r:
            data: dict[str, int] = json.load(r)
            return data

    def __exit__(self, *exc: object) -> None:
        self.process.terminate()
        self.process.wait(10)


async def soak(args: argparse.Namespace, server: FaultServer) -> dict[str, Any]:
    from langfusion.graph import ModelRegistry, build_fusion_graph
    from langfusion.graph.models import close_loop_pools

    graph = build_fusion_graph(model_factory=ModelRegistry(base_url=server.base_url))
    callbacks = _callbacks()
    tally = Tally()
    rng = random.Random(args.seed)
    # One warm-up fusion: imports and lazily built objects are not the soak's growth.
    await one_fusion(
        graph, Plan(-1, ["soak/ok#0"], "soak/judge-ok", "soak/synth-ok"), callbacks, tally
    )
    tally = Tally()
    gc.collect()
    before = _resources()
    rounds: list[dict[str, Any]] = []
    per_round = args.fusions // args.rounds
    gate = asyncio.Semaphore(args.in_flight)
    started = time.monotonic()
    index = 0

    async def gated(plan: Plan) -> None:
        async with gate:
            await one_fusion(graph, plan, callbacks, tally)

    for number in range(args.rounds):
        peaks = [0]
        sampling = asyncio.Event()

        async def sample(peaks: list[int] = peaks, done: asyncio.Event = sampling) -> None:
            while not done.is_set():
                peaks.append(max(peaks.pop(), _resources()["rss_mb"]))
                await asyncio.sleep(0.5)

        sampler = asyncio.create_task(sample())
        round_started = time.monotonic()
        plans = [draw(index + i, rng) for i in range(per_round)]
        index += per_round
        async with asyncio.timeout(args.budget_s - (time.monotonic() - started)):
            await asyncio.gather(*(gated(plan) for plan in plans))
        sampling.set()
        await sampler
        gc.collect()
        end = _resources()
        rounds.append(
            {
                "round": number + 1,
                "fusions": per_round,
                "seconds": round(time.monotonic() - round_started, 1),
                "peak_rss_mb": max(peaks[0], end["rss_mb"]),
                "end_rss_mb": end["rss_mb"],
            }
        )
        print(f"round {number + 1}: {rounds[-1]}", flush=True)
    after_rounds = _resources()
    cut = server.calls()
    for plan, summary in tally.done:
        check(plan, summary, tally, cut)
    await close_loop_pools()
    gc.collect()
    after_close = _resources()
    return {
        "tally": tally,
        "callbacks": callbacks,
        "rounds": rounds,
        "before": before,
        "after_rounds": after_rounds,
        "after_close_loop_pools": after_close,
        "seconds": round(time.monotonic() - started, 1),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--fusions", type=int, default=600)
    parser.add_argument("--in-flight", type=int, default=120)
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--seed", type=int, default=11)
    parser.add_argument("--budget-s", type=float, default=1200.0)
    args = parser.parse_args(argv)

    log = CanaryLog()
    logging.basicConfig(level=logging.DEBUG, handlers=[log], force=True)
    with FaultServer() as server:
        import langfusion.graph.fusion  # noqa: F401 - load every library before opening logs

        for name in list(logging.root.manager.loggerDict):
            logger = logging.getLogger(name)
            logger.setLevel(logging.DEBUG)
            logger.disabled = False
        out = asyncio.run(soak(args, server))
        served = server.stats()
    report(args, out, served, log)


def report(
    args: argparse.Namespace, out: dict[str, Any], served: dict[str, int], log: CanaryLog
) -> None:
    tally: Tally = out["tally"]
    callbacks = out["callbacks"]
    calls = sum(served.values())
    faulted = sum(n for kind, n in served.items() if kind not in ("ok", "judge-ok", "synth-ok"))
    fusions = sum(tally.runs.values())
    lines = [
        f"{fusions} fusions ({args.in_flight} allowed in flight, {tally.max_in_flight} reached) "
        f"on one compiled graph in {out['seconds']} s; {calls} model calls served, "
        f"{faulted} ({100 * faulted / max(calls, 1):.0f}%) with an injected fault",
        "",
        "| result (status / failure_reason) | fusions |",
        "| --- | ---: |",
        *(f"| {key} | {n} |" for key, n in sorted(tally.runs.items(), key=lambda kv: -kv[1])),
        "",
        "| check | value |",
        "| --- | --- |",
        f"| run status and reason as injected | {tally.run_agree}/{fusions} |",
        f"| panel model outcome (answer or reason) as injected | "
        f"{tally.panel_agree}/{tally.panel_total} |",
        f"| panel `status_code` as injected | {tally.status_agree}/{tally.panel_total} |",
        f"| panel failures whose deadline ended a back-off wait (reported with the "
        f"last error, not `timeout`) | {tally.cut_backoffs} |",
        f"| answer exactly the final attempt's text | "
        f"{tally.answer_exact}/{tally.answers_expected} "
        f"({tally.retried_streams} after a stream cut midway) |",
        f"| exceptions that escaped | {len(tally.escaped)} |",
        f"| canary key in results / answers / streamed tokens | {tally.result_leaks} |",
        f"| canary key in log records (DEBUG, every library) | {len(log.leaks)} of {log.records} |",
        f"| canary key in errors handed to callbacks | "
        f"{len(callbacks.leaks)} of {callbacks.errors} |",
        "",
        "| round | fusions | seconds | peak RSS MB | end RSS MB |",
        "| ---: | ---: | ---: | ---: | ---: |",
        *(
            f"| {r['round']} | {r['fusions']} | {r['seconds']} | {r['peak_rss_mb']} | "
            f"{r['end_rss_mb']} |"
            for r in out["rounds"]
        ),
        "",
        "| resource | before | after the rounds | after close_loop_pools() |",
        "| --- | ---: | ---: | ---: |",
        *(
            f"| {name} | {out['before'][name]} | {out['after_rounds'][name]} | "
            f"{out['after_close_loop_pools'][name]} |"
            for name in ("rss_mb", "fds", "sockets", "tasks", "threads")
        ),
        "",
        "| injected panel fault | reported as |",
        "| --- | --- |",
        *(
            f"| {kind} | {', '.join(f'{r} {n}' for r, n in counts.most_common())} |"
            for kind, counts in sorted(tally.panel.items())
        ),
    ]
    text = "\n".join(lines)
    print(text)
    for title, items in (
        ("run mismatches", tally.run_mismatch),
        ("escaped", tally.escaped[:20]),
        ("log leaks", log.leaks[:10]),
        ("callback leaks", callbacks.leaks[:10]),
    ):
        if items:
            print(f"\n{title}:", *items, sep="\n  ")
    RESULTS.mkdir(exist_ok=True)
    data = {
        "machine": {"python": platform.python_version(), "cpus": os.cpu_count()},
        "versions": {p: version(p) for p in ("langgraph", "langchain-openai", "openai")},
        "load_average_1_5_15": os.getloadavg(),
        "args": vars(args),
        "served_by_kind": served,
        "table": text,
        "rounds": out["rounds"],
        "resources": {k: out[k] for k in ("before", "after_rounds", "after_close_loop_pools")},
        "run_mismatches": tally.run_mismatch,
        "escaped": tally.escaped,
        "log_leaks": log.leaks[:50],
        "callback_leaks": callbacks.leaks[:50],
    }
    (RESULTS / "soak.json").write_text(json.dumps(data, indent=1))


if __name__ == "__main__":
    main()
