"""A finished run on stdout: the result's Markdown for people, or the JSON for programs."""

from __future__ import annotations

import json

from rich.console import Console
from rich.markdown import Markdown

from langfusion.graph.projection import CostProjection
from langfusion.graph.render import projection_markdown, result_markdown
from langfusion.graph.schema import FusionResult

__all__ = ["write_json", "write_projection", "write_result"]


def write_result(
    console: Console, result: FusionResult, answer: str | None, *, responses: bool
) -> None:
    """Show the result and the answer: rendered on a terminal, as Markdown text elsewhere.

    Args:
        console: Where it goes.
        result: The run's result.
        answer: The synthesis; ``None`` when the run was not asked to write one.
        responses: Also show every panel model's full answer.
    """
    _write_markdown(console, result_markdown(result, answer=answer, responses=responses))


def write_projection(console: Console, projection: CostProjection, *, as_json: bool) -> None:
    """Show a run's worst-case cost: as Markdown, or as its JSON for programs."""
    if as_json:
        console.file.write(projection.model_dump_json(indent=2) + "\n")
        console.file.flush()
        return
    _write_markdown(console, projection_markdown(projection) + "\n")


def _write_markdown(console: Console, text: str) -> None:
    if console.is_terminal:
        console.print(Markdown(text))
        return
    # A file or a pipe gets the Markdown itself: a report that reads as text, or renders.
    console.file.write(text)
    console.file.flush()


def write_json(console: Console, result: FusionResult, answer: str) -> None:
    """Write ``{"result": <the SPEC result>, "answer": ...}`` as one JSON document."""
    data = {"result": result.model_dump(mode="json"), "answer": answer}
    console.file.write(json.dumps(data, ensure_ascii=False, indent=2) + "\n")
    console.file.flush()
