"""A fusion result for people: the one Markdown rendering, for notebooks and the terminal."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from langfusion.graph.schema import Analysis, FusionResult, RunUsage, Step

__all__ = ["result_markdown"]


def result_markdown(
    result: FusionResult | Mapping[str, Any], *, answer: str | None = None, responses: bool = False
) -> str:
    """Render a result as Markdown: the panel, the analysis and the answer.

    The panel table lists every model with its tokens, seconds and the start
    of its answer, or why it failed; the analysis table lists consensus,
    contradictions (one row per stance), partial coverage, unique insights
    and blind spots, each with the models it concerns.

    Args:
        result: The result of a fusion, as a model or as its JSON data (the
            graph's ``out["result"]``).
        answer: The synthesis, shown last; ``None`` leaves the section out
            (the result does not carry it), ``""`` says that none came back.
        responses: Also show every panel model's full answer.

    Returns:
        The Markdown text.
    """
    if not isinstance(result, FusionResult):
        result = FusionResult.model_validate(result)
    blocks: list[str] = []
    if result.status == "error":
        blocks.append(f"**Fusion failed** (`{result.failure_reason}`): {result.error}")
    if result.responses or result.failed_models:
        blocks += ["## Panel", "\n".join(_panel_table(result))]
    if responses:
        for response in result.responses:
            blocks += [f"### {response.model}", response.content.strip()]
    if result.status == "ok":
        blocks.append("## Analysis")
        if result.analysis is None:
            blocks.append(
                f"_No analysis: the judge failed (`{result.failure_reason}`); "
                "the answer was written from the panel's raw answers._"
            )
        else:
            blocks.append("\n".join(_analysis_table(result.analysis)))
        blocks += list(_trust_notes(result))
        if result.citations:
            blocks += ["## Sources", "\n".join(_sources(result))]
        if answer is not None:
            blocks += ["## Answer", answer.strip() or "_No answer: the synthesis failed._"]
            if answer.strip() and result.answer_truncated:
                blocks.append("_The answer stopped at its token cap: it is cut short._")
    usage = result.usage
    total = usage.total.total_tokens
    if total:
        steps = " · ".join(_step_tokens(usage, step) for step in ("panel", "judge", "synthesis"))
        blocks.append(
            f"_Tokens: {total:,} in all ({steps})"
            + (f"; ${usage.total.cost:.4f} as reported" if usage.total.cost is not None else "")
            + "._"
        )
    elif usage.unreported:
        blocks.append("_Tokens: not reported by the provider._")
    return "\n\n".join(blocks) + "\n"


def _step_tokens(usage: RunUsage, step: Step) -> str:
    tokens = getattr(usage, step).total_tokens
    if step not in usage.unreported:
        return f"{step} {tokens:,}"
    return f"{step} {tokens:,} and some not reported" if tokens else f"{step} not reported"


def _trust_notes(result: FusionResult) -> Iterator[str]:
    """What a reader must know to trust the analysis: degraded, corrected, repaired."""
    meta = result.analysis_meta
    if meta is None:
        return
    if meta.degraded == "single_response":
        yield (
            "_Degraded: only one answer was compared, so its consensus and contradictions "
            "are not a comparison._"
        )
    if meta.dropped_citations:
        cited = ", ".join(f"{d.cited} ({d.section})" for d in meta.dropped_citations)
        yield f"_Dropped {len(meta.dropped_citations)} citation(s) of no panelist: {_cell(cited)}._"
    if meta.repaired:
        yield "_The judge's output was not clean JSON; it was repaired before it was checked._"


def _sources(result: FusionResult) -> Iterator[str]:
    for c in result.citations:
        title = f"{_cell(c.title)}: " if c.title else ""
        yield f"- {title}<{c.url}> ({', '.join(c.models)})"


def _panel_table(result: FusionResult) -> Iterator[str]:
    yield "| model | tokens out | seconds | answer |"
    yield "| --- | --- | --- | --- |"
    for r in result.responses:
        tokens = r.usage.output_tokens if r.usage else ""
        seconds = f"{r.latency_s:.1f}" if r.latency_s is not None else ""
        cut = " _(cut at its token cap)_" if r.truncated else ""
        yield f"| {_cell(r.model)} | {tokens} | {seconds} | {_cell(r.content, 120)}{cut} |"
    for f in result.failed_models:
        yield f"| {_cell(f.model)} | | | failed ({f.failure_reason}): {_cell(f.error)} |"


def _analysis_table(analysis: Analysis) -> Iterator[str]:
    rows: list[tuple[str, str, str]] = []
    rows += [("consensus", "all", point) for point in analysis.consensus]
    rows += [
        ("contradiction", s.model, f"{c.topic}: {s.stance}")
        for c in analysis.contradictions
        for s in c.stances
    ]
    rows += [("partial coverage", ", ".join(p.models), p.point) for p in analysis.partial_coverage]
    rows += [("unique insight", u.model, u.insight) for u in analysis.unique_insights]
    rows += [("blind spot", "none", point) for point in analysis.blind_spots]
    if not rows:
        yield "_The judge found nothing to report._"
        return
    yield "| kind | model | point |"
    yield "| --- | --- | --- |"
    yield from (f"| {kind} | {_cell(models)} | {_cell(point)} |" for kind, models, point in rows)


def _cell(text: str, limit: int = 300) -> str:
    """One table cell: one line, ``|`` escaped, long text cut."""
    flat = " ".join(text.split())
    flat = flat if len(flat) <= limit else flat[: limit - 1] + "…"
    return flat.replace("|", "\\|")
