"""A finished run on stdout: the result's Markdown for people, or the JSON for programs."""

from __future__ import annotations

import json

from rich.console import Console
from rich.markdown import Markdown

from langfusion.graph.render import result_markdown
from langfusion.graph.schema import FusionResult

__all__ = ["write_json", "write_result"]


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
    text = result_markdown(result, answer=answer, responses=responses)
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
