"""What the benchmarks share: a clean environment, scenarios, the three implementations, output.

The three implementations make the same HTTP calls to the same server:

- ``fusion``: the graph, ``build_fusion_graph(model_factory=ModelRegistry(...))``.
- ``floor_a``: the card's stack without a graph: pre-built ``ChatOpenAI``
  models (``max_retries=0``, the SDK's own default connection pool),
  ``asyncio.gather`` for the panel, a pre-built ``with_structured_output``
  judge, then the synthesis.
- ``floor_b``: one pooled ``aiohttp`` session posting the request bodies the
  graph sent (captured once), and parsing the replies.

``use_sdk_pool()`` makes the graph's models share an ``openai.DefaultAsyncHttpxClient``
(the pool the SDK itself is built on) instead of the pool ``graph/models.py``
builds: it measures the proposed change to ``graph/models.py`` without editing it.
"""

from __future__ import annotations

import os

# Before anything imports langsmith: it reads these once.
os.environ["OPENROUTER_API_KEY"] = "sk-bench-not-a-real-key"
os.environ["LANGSMITH_TRACING"] = "false"
for _name in ("LANGCHAIN_TRACING_V2", "LANGCHAIN_TRACING", "OPENROUTER_BASE_URL"):
    os.environ.pop(_name, None)

import asyncio  # noqa: E402
import json  # noqa: E402
import operator  # noqa: E402
import platform  # noqa: E402
import string  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from collections.abc import Awaitable, Callable, Sequence  # noqa: E402
from dataclasses import dataclass, field  # noqa: E402
from importlib.metadata import version  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Annotated, Any, TypedDict  # noqa: E402

from langgraph.types import Send  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"
QUESTION = "Where do economists disagree about the growth effects of a carbon tax?"
JUDGE = "bench/judge"
SYNTH = "bench/synth"
DEPTH_HEADERS = {"x-fusion-depth": "1"}


# floor (b)'s connection limit: that of the OpenAI SDK's default pool, which floor (a) uses.
FLOOR_B_CONNECTIONS = 1000


def use_sdk_pool() -> None:
    """Patch ``graph/models.py`` to pool through ``openai.DefaultAsyncHttpxClient``."""
    import weakref

    import openai

    from langfusion.graph import models

    pools: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[str, Any]] = (
        weakref.WeakKeyDictionary()
    )

    def sdk_client(base_url: str) -> Any:
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return None
        per_loop = pools.setdefault(loop, {})
        if base_url not in per_loop:
            per_loop[base_url] = openai.DefaultAsyncHttpxClient(timeout=None, trust_env=False)
        return per_loop[base_url]

    models._async_client = sdk_client  # type: ignore[attr-defined]


@dataclass
class Scenario:
    """Panel latencies, judge and synthesis latencies: the critical path is known."""

    panel: dict[str, float]
    judge_s: float = 0.0
    synth_s: float = 0.0
    answer_chars: int = 400
    extra: dict[str, dict[str, Any]] = field(default_factory=dict)

    @property
    def critical_path_s(self) -> float:
        live = [s for m, s in self.panel.items() if not self.extra.get(m, {}).get("hang")]
        return max(live, default=0.0) + self.judge_s + self.synth_s

    def server_models(self) -> dict[str, dict[str, Any]]:
        spec = {
            slug: {"latency_s": s, "content_chars": self.answer_chars, **self.extra.get(slug, {})}
            for slug, s in self.panel.items()
        }
        spec[JUDGE] = {"latency_s": self.judge_s, **self.extra.get(JUDGE, {})}
        synth = self.extra.get(SYNTH, {})
        spec[SYNTH] = {"latency_s": self.synth_s, **synth}
        if "content_chars" not in synth:
            spec[SYNTH].setdefault("content", "The synthesis answer.")
        return spec


def spread(n: int, low: float, high: float, prefix: str = "bench/p") -> dict[str, float]:
    """``n`` panel slugs with latencies evenly spread from ``low`` to ``high`` (n=1: ``high``)."""
    if n == 1:
        return {f"{prefix}0": high}
    step = (high - low) / (n - 1)
    return {f"{prefix}{i}": round(low + i * step, 4) for i in range(n)}


def judge_prompt(answers: list[tuple[str, str]]) -> tuple[str, dict[str, str]]:
    """The judge prompt over ``(slug, text)`` answers in order, and its labels."""
    from langfusion.graph.prompts import JUDGE_RESPONSE, JUDGE_USER

    letters = string.ascii_uppercase[: len(answers)]
    labels = {f"Response {c}": slug for c, (slug, _) in zip(letters, answers, strict=True)}
    prompt = JUDGE_USER.format(
        question=QUESTION,
        responses="\n\n".join(
            JUDGE_RESPONSE.format(label=label, content=text)
            for label, (_, text) in zip(labels, answers, strict=True)
        ),
    )
    return prompt, labels


def synthesis_prompt(verdict: Any, labels: dict[str, str], answers: list[tuple[str, str]]) -> str:
    """The synthesis prompt from the judge's parsed verdict."""
    from langfusion.graph import JudgeVerdict
    from langfusion.graph.prompts import JUDGE_RESPONSE, SYNTHESIS_USER

    analysis = JudgeVerdict.model_validate(verdict).analysis().relabel(labels)
    return SYNTHESIS_USER.format(
        question=QUESTION,
        analysis=analysis.model_dump_json(indent=1),
        responses="\n\n".join(
            JUDGE_RESPONSE.format(label=slug, content=text) for slug, text in answers
        ),
    )


def bare_graph(
    slugs: list[str],
    panel_call: Callable[[str], Awaitable[tuple[str, str]]],
    judge_call: Callable[[list[tuple[str, str]]], Awaitable[str]],
    synthesis_call: Callable[[str], Awaitable[str]],
) -> Any:
    """A minimal LangGraph graph of the fusion graph's shape around the given calls.

    Six nodes (prepare, analyze, tally, judge, synthesize, report), a ``Send``
    per panelist, each node doing nothing but its call: LangGraph's own cost.
    """
    from langgraph.graph import START, StateGraph

    async def nothing(state: BareState) -> dict[str, Any]:
        return {}

    async def fan_out(state: BareState) -> list[Send]:
        return [Send("analyze", slug) for slug in slugs]

    async def analyze(slug: str) -> dict[str, Any]:
        return {"replies": [await panel_call(slug)]}

    async def judge(state: BareState) -> dict[str, Any]:
        return {"synthesis_prompt": await judge_call(state["replies"])}

    async def synthesize(state: BareState) -> dict[str, Any]:
        return {"answer": await synthesis_call(state["synthesis_prompt"])}

    builder = StateGraph(BareState)
    builder.add_node("prepare", nothing)
    builder.add_node("analyze", analyze)  # type: ignore[type-var]
    builder.add_node("tally", nothing)
    builder.add_node("judge", judge)
    builder.add_node("synthesize", synthesize)
    builder.add_node("report", nothing)
    builder.add_edge(START, "prepare")
    builder.add_conditional_edges("prepare", fan_out, ["analyze"])
    builder.add_edge("analyze", "tally")
    builder.add_edge("tally", "judge")
    builder.add_edge("judge", "synthesize")
    builder.add_edge("synthesize", "report")
    return builder.compile()


class BareState(TypedDict, total=False):
    """The state of ``bare_graph``."""

    replies: Annotated[list[tuple[str, str]], operator.add]
    synthesis_prompt: str
    answer: str


class Fusion:
    """The graph."""

    name = "fusion"

    def __init__(self, base_url: str, scenario: Scenario, **context: Any) -> None:
        from langchain_core.messages import HumanMessage

        from langfusion.graph import FusionContext, ModelRegistry, build_fusion_graph

        registry = ModelRegistry(base_url=base_url)
        self.graph = build_fusion_graph(model_factory=registry, web_tools=[])
        self.context = FusionContext(
            analysis_models=list(scenario.panel),
            model=JUDGE,
            synthesis_model=SYNTH,
            web_tools=False,
            **context,
        )
        self._input = HumanMessage

    async def run(self) -> dict[str, Any]:
        out: dict[str, Any] = await self.graph.ainvoke(
            {"messages": [self._input(QUESTION)]}, context=self.context
        )
        return out

    async def check(self) -> None:
        from langfusion.graph import FusionResult

        out = await self.run()
        result = FusionResult.model_validate(out["result"])
        if result.status != "ok" or result.analysis is None or not out["answer"]:
            raise SystemExit(f"fusion did not complete: {result.model_dump_json()[:500]}")

    async def close(self) -> None:
        return None


class FloorA:
    """Pre-built ``ChatOpenAI`` models, ``asyncio.gather``, structured judge, synthesis."""

    name = "floor_a"

    def __init__(
        self, base_url: str, scenario: Scenario, timeout_s: float = 180.0, max_retries: int = 0
    ) -> None:
        from langchain_openai import ChatOpenAI

        from langfusion.graph import judge_schema

        def model(slug: str, **kwargs: Any) -> ChatOpenAI:
            # A float timeout: langchain-openai then shares one cached default
            # client (one pool) across these models, as the graph shares one.
            return ChatOpenAI(
                model=slug,
                base_url=base_url,
                api_key="sk-bench-not-a-real-key",  # type: ignore[arg-type]
                max_retries=max_retries,
                timeout=timeout_s,
                default_headers=DEPTH_HEADERS,
                stream_usage=True,
                **kwargs,
            )

        self.panel = [(slug, model(slug)) for slug in scenario.panel]
        self.judge = model(JUDGE, temperature=0.0).with_structured_output(
            judge_schema(), method="json_schema", strict=True, include_raw=True
        )
        self.synth = model(SYNTH)

    async def panel_call(self, slug: str, model: Any) -> tuple[str, str]:
        from langchain_core.messages import HumanMessage, SystemMessage

        from langfusion.graph.prompts import PANEL_SYSTEM

        reply = await model.ainvoke([SystemMessage(PANEL_SYSTEM), HumanMessage(QUESTION)])
        return slug, reply.text

    async def judge_call(self, answers: list[tuple[str, str]]) -> str:
        """The judge's call; returns the synthesis prompt built from its verdict."""
        from langchain_core.messages import HumanMessage, SystemMessage

        from langfusion.graph.prompts import JUDGE_SYSTEM

        prompt, labels = judge_prompt(answers)
        out = await self.judge.ainvoke([SystemMessage(JUDGE_SYSTEM), HumanMessage(prompt)])
        return synthesis_prompt(out["parsed"], labels, answers)

    async def synthesis_call(self, prompt: str) -> str:
        from langchain_core.messages import HumanMessage, SystemMessage

        from langfusion.graph.prompts import SYNTHESIS_SYSTEM

        reply = await self.synth.ainvoke([SystemMessage(SYNTHESIS_SYSTEM), HumanMessage(prompt)])
        text: str = reply.text
        return text

    async def run(self) -> str:
        answers = await asyncio.gather(*(self.panel_call(s, m) for s, m in self.panel))
        return await self.synthesis_call(await self.judge_call(list(answers)))

    async def check(self) -> None:
        if not await self.run():
            raise SystemExit("floor_a did not complete")

    async def close(self) -> None:
        return None  # the pool is langchain-openai's shared default client


class FloorALangGraph(FloorA):
    """Floor (a)'s calls inside a minimal LangGraph graph of the fusion graph's shape.

    What LangGraph's orchestration costs by itself over the same HTTP calls:
    the fusion graph minus this is what langfusion's nodes add.
    """

    name = "floor_a_langgraph"

    def __init__(self, base_url: str, scenario: Scenario) -> None:
        super().__init__(base_url, scenario)
        models = dict(self.panel)
        self.graph = bare_graph(
            list(models),
            lambda slug: self.panel_call(slug, models[slug]),
            self.judge_call,
            self.synthesis_call,
        )

    async def run(self) -> str:
        out = await self.graph.ainvoke({"replies": []})
        text: str = out["answer"]
        return text


class FloorB:
    """One pooled aiohttp session posting the graph's own request bodies."""

    name = "floor_b"

    def __init__(self, base_url: str, bodies: dict[str, Any]) -> None:
        import aiohttp

        self._url = f"{base_url}/chat/completions"
        self._session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=FLOOR_B_CONNECTIONS),
            headers={
                "Authorization": "Bearer sk-bench-not-a-real-key",
                "Content-Type": "application/json",
                **DEPTH_HEADERS,
            },
        )
        self._panel = [b.encode() for b in bodies["panel"]]
        self._judge = bodies["judge"].encode()
        self._synth = bodies["synth"].encode()

    async def _post(self, body: bytes) -> dict[str, Any]:
        async with self._session.post(self._url, data=body) as response:
            response.raise_for_status()
            data: dict[str, Any] = json.loads(await response.read())
            return data

    async def run(self) -> str:
        replies = await asyncio.gather(*(self._post(b) for b in self._panel))
        [r["choices"][0]["message"]["content"] for r in replies]
        verdict = await self._post(self._judge)
        json.loads(verdict["choices"][0]["message"]["content"])
        synth = await self._post(self._synth)
        text: str = synth["choices"][0]["message"]["content"]
        return text

    async def check(self) -> None:
        if not await self.run():
            raise SystemExit("floor_b did not complete")

    async def close(self) -> None:
        await self._session.close()


async def capture_bodies(server: Any, scenario: Scenario) -> dict[str, Any]:
    """Run one fusion with body logging on; return the exact panel, judge and synthesis bodies."""
    server.configure(scenario.server_models(), record=True, record_bodies=True)
    await Fusion(server.base_url, scenario).check()
    log = server.log()
    server.configure(scenario.server_models())
    by_model = {entry["model"]: entry["raw"] for entry in log}
    return {
        "panel": [by_model[slug] for slug in scenario.panel],
        "judge": by_model[JUDGE],
        "synth": by_model[SYNTH],
    }


def make(name: str, base_url: str, scenario: Scenario, bodies: dict[str, Any] | None = None) -> Any:
    """Build the implementation called ``name``."""
    if name == "fusion":
        return Fusion(base_url, scenario)
    if name == "floor_a":
        return FloorA(base_url, scenario)
    if name == FloorALangGraph.name:
        return FloorALangGraph(base_url, scenario)
    if name == FLOOR_A_RETRIES:
        impl = FloorA(base_url, scenario, max_retries=2)
        impl.name = FLOOR_A_RETRIES
        return impl
    if name == "floor_b":
        if bodies is None:
            raise ValueError("floor_b needs the captured bodies")
        return FloorB(base_url, bodies)
    raise ValueError(name)


IMPLS = ("fusion", "floor_a", "floor_b")
# Floor (a) with the client retries the graph's models have (max_retries=2):
# what retries cost when nothing fails.
FLOOR_A_RETRIES = "floor_a_retries"


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (0-100), linear between closest ranks."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    rank = (len(ordered) - 1) * q / 100
    low = int(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def summary(values: Sequence[float]) -> dict[str, float]:
    """n, median, p95, p99, min and max."""
    return {
        "n": len(values),
        "median": percentile(values, 50),
        "p95": percentile(values, 95),
        "p99": percentile(values, 99),
        "min": min(values) if values else float("nan"),
        "max": max(values) if values else float("nan"),
    }


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A plain-text table (also valid Markdown)."""

    def cell(value: Any) -> str:
        if isinstance(value, float):
            return f"{value:.3f}" if abs(value) < 100 else f"{value:.1f}"
        return str(value)

    cells = [[cell(v) for v in row] for row in rows]
    widths = [max(len(h), *(len(r[i]) for r in cells)) for i, h in enumerate(headers)]
    lines = [
        "| " + " | ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)) + " |",
        "|" + "|".join("-" * (w + 2) for w in widths) + "|",
    ]
    lines += [
        "| " + " | ".join(c.rjust(w) for c, w in zip(r, widths, strict=True)) + " |" for r in cells
    ]
    return "\n".join(lines)


_PACKAGES = (
    "langgraph",
    "langchain-core",
    "langchain-openai",
    "openai",
    "httpx",
    "httpx2",
    "aiohttp",
)


def _version(package: str) -> str | None:
    try:
        return version(package)
    except Exception:  # noqa: BLE001 - not installed
        return None


def machine() -> dict[str, Any]:
    """What the numbers were measured on."""
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, timeout=5
        ).stdout.strip()
    except OSError:
        commit = ""
    return {
        "cpus": os.cpu_count(),
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "commit": commit,
        "versions": {p: _version(p) for p in _PACKAGES},
        # Other work on the machine skews timings: look here before comparing runs.
        "load_average_1_5_15": [round(x, 2) for x in os.getloadavg()],
        "when": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }


def write_results(name: str, data: dict[str, Any]) -> Path:
    """Write ``benchmarks/results/<name>.json`` and return its path."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}.json"
    path.write_text(json.dumps({"benchmark": name, "machine": machine(), **data}, indent=2) + "\n")
    print(f"\nwrote {path.relative_to(Path.cwd()) if path.is_relative_to(Path.cwd()) else path}")
    return path
