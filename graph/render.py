"""A fusion result for people: the one Markdown rendering, for notebooks and the terminal."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from langfusion.graph.projection import CostProjection
from langfusion.graph.schema import Analysis, FusionResult, RunUsage, Step, Usage

__all__ = ["projection_markdown", "result_markdown"]


def result_markdown(
    result: FusionResult | Mapping[str, Any], *, answer: str | None = None, responses: bool = False
) -> str:
    """Render a result as Markdown: the panel, the analysis and the answer.

    The panel table lists every model with its tokens, seconds and the start
    of its answer (and its cost, where one is known), or why it failed; the
    analysis table lists consensus, contradictions (one row per stance),
    partial coverage, unique insights and blind spots, each with the models it
    concerns. A run refused by its budget shows the projection it was refused for.

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
    if result.cost_projection is not None:
        blocks.append(projection_markdown(result.cost_projection))
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
        blocks.append(f"_Tokens: {total:,} in all ({steps}){_run_cost(usage)}._")
    elif usage.unreported:
        blocks.append("_Tokens: not reported by the provider._")
    return "\n\n".join(blocks) + "\n"


def projection_markdown(projection: CostProjection) -> str:
    """A cost projection as Markdown: the worst case in all, by step, and call by call.

    Args:
        projection: What ``estimate_cost`` returned, or a refused result's ``cost_projection``.

    Returns:
        The Markdown text.
    """
    notes = [f"{step} ${usd:.4f}" for step, usd in projection.steps.items()]
    bound = "at most" if projection.complete else "at least (not a bound: see below)"
    notes.append(
        "tokens counted with tiktoken"
        if projection.token_counting == "tiktoken"
        else "tokens estimated at four characters each"
    )
    lines = [f"**Worst case: {bound} ${projection.total_usd:.4f}** ({' · '.join(notes)})", ""]
    lines += [
        "| step | model | rounds | prompt tokens | completion cap | worst case |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for call in projection.calls:
        cap = f"{call.completion_tokens:,} ({call.cap_source})" if call.completion_tokens else ""
        cost = f"${call.cost_usd:.4f}" if call.cost_usd is not None else "unknown"
        lines.append(
            f"| {call.step} | {_cell(call.model)} | {call.rounds} | {call.prompt_tokens:,} "
            f"| {cap or 'unknown'} | {cost} |"
        )
    if projection.unpriced:
        lines += ["", f"_No price known for {_cell(', '.join(projection.unpriced))}._"]
    if projection.uncapped:
        lines += ["", f"_No completion cap known for {_cell(', '.join(projection.uncapped))}._"]
    return "\n".join(lines)


def _run_cost(usage: RunUsage) -> str:
    """The run's cost and each step's, and where it came from; nothing when none is known."""
    if usage.total.cost is None:
        return ""
    source = "as reported" if usage.total.cost_source == "provider" else "at list prices"
    steps = " · ".join(
        f"{step} {_usd(getattr(usage, step))}" for step in ("panel", "judge", "synthesis")
    )
    return f"; ${usage.total.cost:.4f} {source} ({steps})"


def _usd(usage: Usage | None) -> str:
    return f"${usage.cost:.4f}" if usage is not None and usage.cost is not None else "unknown"


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
    # A cost column only where some answer's cost is known.
    costed = any(r.usage is not None and r.usage.cost is not None for r in result.responses)
    yield "| model | tokens out | seconds | answer |" + (" cost |" if costed else "")
    yield "| --- | --- | --- | --- |" + (" --- |" if costed else "")
    for r in result.responses:
        tokens = r.usage.output_tokens if r.usage else ""
        seconds = f"{r.latency_s:.1f}" if r.latency_s is not None else ""
        cut = " _(cut at its token cap)_" if r.truncated else ""
        cost = f" {_usd(r.usage)} |" if costed else ""
        model = _cell(r.model) + (f" (for {_cell(r.fallback_for)})" if r.fallback_for else "")
        yield f"| {model} | {tokens} | {seconds} | {_cell(r.content, 120)}{cut} |{cost}"
    for f in result.failed_models:
        cost = " |" if costed else ""
        replaced = f"; replaced by {_cell(f.replaced_by)}" if f.replaced_by else ""
        failed = f"failed ({f.failure_reason}{replaced}): {_cell(f.error)}"
        yield f"| {_cell(f.model)} | | | {failed} |{cost}"


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
