"""Does the embedded model's output carry prompt scaffolding? Count it over real local fusions.

Runs ``--runs`` full fusions on three samples of an embedded model, the same
model as judge and synthesis (``--model``; the ``local`` preset's by default), over a fixed list of
questions, and counts, in every panel answer, the synthesis and the
analysis' text, the scaffolding a newcomer would see: the tags of
langfusion's prompts (``<answer>``, ``<response>``, ...) and the model's
control tokens written out (``<start_of_image>``, ``<|im_end|>``), the template's turn labels
(``Question:``, ``Answer:``), and any run of eight words from langfusion's own
prompts (an echoed instruction). HTML formatting the model writes on its own
(``<strong>``) is counted apart, as markup. It also counts citations of anyone
but the panel.

    python -m benchmarks.local_output --runs 10   # writes benchmarks/results/local_output.json
    python -m benchmarks.local_output --runs 10 --model local/gemma-3-270m --out gemma.json
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).parent / "results" / "local_output.json"
QUESTIONS = (
    "What are the trade-offs of nuclear power?",
    "Should a small city build a tram or a bus line?",
    "Is it worth learning Rust in 2025?",
    "How can I sleep better?",
    "What are the risks of a four-day work week?",
    "Should I rent or buy a home?",
    "Why do some bridges sway in the wind?",
    "Is coffee good for you?",
    "How should a beginner start investing?",
    "What makes a good password?",
)
_TAG = re.compile(r"</?([A-Za-z_][\w-]*)(?:\s[^<>]*)?>")
# The tags langfusion's prompts are built from, and Gemma's control tokens.
_SCAFFOLD_TAGS = re.compile(
    r"(answer|question|responses?|analysis|instructions|citations?|verification_notes"
    r"|untrusted_web_content|start_of_turn|end_of_turn|start_of_image|end_of_image|bos|eos"
    r"|pad|mask|unk|unused\d+)",
    re.IGNORECASE,
)
# SmolLM2's chat-template tokens (``<|im_start|>``, ``<|im_end|>``, ``<|endoftext|>``).
_CONTROL = re.compile(r"<\|[a-z_]+\|>")
_TURN = re.compile(r"\b(Question|Answer|Result|Background):|\bExpert \d+ said:")
_SHINGLE = 8


def _words(text: str) -> list[str]:
    return re.findall(r"[a-z0-9']+", text.lower())


def _prompt_shingles() -> set[tuple[str, ...]]:
    from langfusion.graph import prompts

    shingles: set[tuple[str, ...]] = set()
    for name in dir(prompts):
        value = getattr(prompts, name)
        if name.isupper() and isinstance(value, str):
            words = _words(re.sub(r"\{[a-z_]+\}", " ", value))
            shingles |= {tuple(words[i : i + _SHINGLE]) for i in range(len(words) - _SHINGLE + 1)}
    return shingles


def scaffolding(text: str, shingles: set[tuple[str, ...]] | None = None) -> list[str]:
    """What in ``text`` is prompt scaffolding: tags, turn labels, echoed instructions."""
    shingles = _prompt_shingles() if shingles is None else shingles
    found = [f"tag {m.group(0)}" for m in _TAG.finditer(text) if _SCAFFOLD_TAGS.fullmatch(m[1])]
    found += [f"control token {m.group(0)}" for m in _CONTROL.finditer(text)]
    found += [f"turn label {m.group(0)}" for m in _TURN.finditer(text)]
    words = _words(text)
    found += [
        "echoed instruction: " + " ".join(words[i : i + _SHINGLE])
        for i in range(len(words) - _SHINGLE + 1)
        if tuple(words[i : i + _SHINGLE]) in shingles
    ]
    return found


def scaffolding_found(
    result: dict[str, Any], answer: str, shingles: set[tuple[str, ...]] | None = None
) -> dict[str, Any]:
    """The scaffolding in a fusion's panel answers (one list each), its answer and its analysis.

    Args:
        result: The fusion result (the SPEC JSON).
        answer: The answer the synthesis wrote.
        shingles: The prompts' eight-word runs, when already computed.
    """
    shingles = _prompt_shingles() if shingles is None else shingles
    texts = analysis_texts(result.get("analysis"))
    return {
        "responses": [scaffolding(r["content"], shingles) for r in result["responses"]],
        "answer": scaffolding(answer, shingles),
        "analysis": [hit for text in texts for hit in scaffolding(text, shingles)],
    }


def markup(text: str) -> list[str]:
    """HTML formatting tags in ``text`` that are not scaffolding (``<strong>``, ``<em>``)."""
    return [m.group(0) for m in _TAG.finditer(text) if not _SCAFFOLD_TAGS.fullmatch(m[1])]


def analysis_texts(analysis: dict[str, Any] | None) -> Iterable[str]:
    """Every free-text string of an analysis."""
    if not analysis:
        return []
    texts = [*analysis["consensus"], *analysis["blind_spots"]]
    for c in analysis["contradictions"]:
        texts += [c["topic"], *(s["stance"] for s in c["stances"])]
    texts += [p["point"] for p in analysis["partial_coverage"]]
    texts += [u["insight"] for u in analysis["unique_insights"]]
    return texts


def cited_models(analysis: dict[str, Any] | None) -> set[str]:
    """Every model an analysis credits."""
    if not analysis:
        return set()
    named = {s["model"] for c in analysis["contradictions"] for s in c["stances"]}
    named |= {m for p in analysis["partial_coverage"] for m in p["models"]}
    return named | {u["model"] for u in analysis["unique_insights"]}


async def run(runs: int, model: str | None = None) -> dict[str, Any]:
    from langchain_core.messages import HumanMessage

    from langfusion.graph import FusionContext, build_fusion_graph

    graph = build_fusion_graph()
    shingles = _prompt_shingles()
    rows = []
    for index in range(runs):
        question = QUESTIONS[index % len(QUESTIONS)]
        ctx = (
            FusionContext(preset="local", web_tools=False)
            if model is None
            else FusionContext(
                analysis_models=[f"{model}#1", f"{model}#2", f"{model}#3"],
                model=model,
                web_tools=False,
            )
        )
        started = time.monotonic()
        out = await graph.ainvoke({"messages": [HumanMessage(question)]}, context=ctx)
        result = out["result"]
        found = scaffolding_found(result, out["answer"], shingles)
        rows.append(
            {
                "question": question,
                "seconds": round(time.monotonic() - started, 1),
                "status": result["status"],
                "failure_reason": result.get("failure_reason"),
                "scaffolding": found,
                "foreign_citations": sorted(cited_models(result.get("analysis")) - set(ctx.panel)),
                "markup": [markup(r["content"]) for r in result["responses"]]
                + [markup(out["answer"])],
                "answer": out["answer"],
            }
        )
        print(f"{index + 1}/{runs} {question!r}: {found}", flush=True)
    panel_outputs = sum(len(r["scaffolding"]["responses"]) for r in rows)
    return {
        "model": ctx.judge,
        "runs": runs,
        "panel_answers_with_scaffolding": sum(
            bool(hits) for r in rows for hits in r["scaffolding"]["responses"]
        ),
        "panel_answers": panel_outputs,
        "answers_with_scaffolding": sum(bool(r["scaffolding"]["answer"]) for r in rows),
        "analyses_with_scaffolding": sum(bool(r["scaffolding"]["analysis"]) for r in rows),
        "runs_with_foreign_citations": sum(bool(r["foreign_citations"]) for r in rows),
        "outputs_with_markup": sum(bool(m) for r in rows for m in r["markup"]),
        "failed_runs": [r["failure_reason"] for r in rows if r["failure_reason"]],
        "rows": rows,
    }


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.local_output")
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--model", help="an embedded model's slug (default: the local preset's)")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    report = asyncio.run(run(args.runs, args.model))
    args.out.write_text(json.dumps(report, indent=1, ensure_ascii=False) + "\n")
    print(json.dumps({k: v for k, v in report.items() if k != "rows"}, indent=1))


if __name__ == "__main__":
    main()
