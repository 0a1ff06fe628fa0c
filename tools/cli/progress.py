"""What a run is doing: one line per panel model, the judge and the synthesis.

``Progress`` follows the graph's custom stream events; ``Display`` draws it
live on a terminal, as one log line per settled step elsewhere, or not at all.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import TracebackType
from typing import TYPE_CHECKING, Any, Literal

from rich.console import Console, ConsoleOptions, RenderableType, RenderResult
from rich.live import Live
from rich.padding import Padding
from rich.spinner import Spinner
from rich.table import Table
from rich.text import Text

if TYPE_CHECKING:
    from langfusion.graph.context import FusionContext
    from langfusion.graph.schema import FusionResult

__all__ = ["Display", "Mode", "Progress", "Step"]

Mode = Literal["live", "log", "off"]

_State = Literal["waiting", "running", "done", "warned", "failed", "skipped"]
_ICONS: dict[_State, tuple[str, str]] = {
    "waiting": ("·", "dim"),
    "running": ("…", "cyan"),
    "done": ("✓", "green"),
    "warned": ("!", "yellow"),
    "failed": ("✗", "red"),
    "skipped": ("-", "dim"),
}


@dataclass
class Step:
    """One line of the progress display: a panel model, the judge or the synthesis."""

    role: str
    model: str
    state: _State = "waiting"
    started: float | None = None
    note: str = ""
    spinner: Spinner = field(default_factory=lambda: Spinner("dots", style="cyan"))

    def start(self, note: str = "") -> bool:
        """Mark the step running; ``False`` when it already was."""
        if self.state == "running":  # a retried call keeps its first start
            return False
        self.state, self.started, self.note = "running", time.monotonic(), note
        return True

    def end(self, state: _State, note: str) -> None:
        """Settle the step with what to show for it."""
        self.state, self.note = state, note

    def elapsed(self) -> float:
        """Seconds since the step started."""
        return time.monotonic() - self.started if self.started is not None else 0.0

    def status(self, *, live: bool) -> Text:
        """What the step is doing, with its running time when ``live``."""
        if self.state == "running":
            verb = {"judge": "comparing", "synthesis": "writing"}.get(self.role, "answering")
            detail = f" {self.note}" if self.note else ""
            if not live:
                return Text(f"{verb}{detail}", style="cyan")
            return Text(f"{verb}{detail} {self.elapsed():.1f}s", style="cyan")
        style = {"failed": "red", "warned": "yellow", "waiting": "dim", "skipped": "dim"}
        return Text(self.note or self.state, style=style.get(self.state, ""))

    def icon(self, *, live: bool) -> RenderableType:
        """A spinner while it runs live, else the glyph of its state."""
        if live and self.state == "running":
            return self.spinner
        glyph, style = _ICONS[self.state]
        return Text(glyph, style=style)

    def line(self, width: int) -> Text:
        """The step as one plain log line, its model name padded to ``width``."""
        glyph, style = _ICONS[self.state]
        return Text.assemble(
            (glyph, style),
            " ",
            (f"{self.role:<9}", "dim"),
            " ",
            (f"{self.model:<{width}}", "bold"),
            "  ",
            self.status(live=False),
        )


def _seconds_and_tokens(seconds: float | None, tokens: int | None) -> str:
    parts = ["done"]
    if seconds is not None:
        parts.append(f"in {seconds:.1f}s")
    text = " ".join(parts)
    return f"{text} · {tokens:,} tokens" if tokens else text


class Progress:
    """What the run is doing, updated from the graph's stream and drawn by rich."""

    def __init__(self, ctx: FusionContext) -> None:
        self.panel = {slug: Step("panel", slug) for slug in ctx.panel}
        self.judge = Step("judge", ctx.judge)
        self.synthesis = Step("synthesis", ctx.synthesizer) if ctx.synthesize else None
        self.preview = True
        # Held while the stream updates the steps and while rich's refresh thread draws them.
        self.lock = threading.RLock()
        self._chunks: list[str] = []

    @property
    def width(self) -> int:
        """The longest model name."""
        return max(len(step.model) for step in self.steps)

    @property
    def steps(self) -> list[Step]:
        """Every line, in the order of the pipeline."""
        steps = [*self.panel.values(), self.judge]
        return [*steps, self.synthesis] if self.synthesis else steps

    def apply(self, event: Mapping[str, Any]) -> Step | None:
        """Update from one custom stream event; return the step it changed."""
        kind = event.get("event")
        model = str(event.get("model") or "")
        if kind in ("panel_started", "panel_finished", "panel_failed"):
            step = self.panel.get(model)
            if step is None:
                step = self.panel[model] = Step("panel", model)
            if kind == "panel_started":
                return step if step.start() else None
            if kind == "panel_finished":
                step.end("done", _seconds_and_tokens(event.get("seconds"), event.get("tokens")))
            else:
                step.end("failed", f"failed: {event.get('reason')}: {event.get('error')}")
            return step
        if kind == "judge_started":
            answered = sum(step.state == "done" for step in self.panel.values())
            started = self.judge.start(f"{answered} answer{'s' if answered != 1 else ''}")
            return self.judge if started else None
        if kind == "judge_finished":
            if event.get("ok"):
                self.judge.end("done", _seconds_and_tokens(self.judge.elapsed(), None))
            else:
                reason = event.get("failure_reason") or "judge_failed"
                self.judge.end("warned", f"no analysis ({reason}); answering from the raw answers")
            return self.judge
        if self.synthesis is None:
            return None
        if kind == "synthesis_started":
            return self.synthesis if self.synthesis.start() else None
        if kind == "synthesis_failed":
            self.synthesis.end("failed", f"failed: {event.get('reason')}: {event.get('error')}")
            return self.synthesis
        return None

    def token(self, text: str) -> None:
        """Add a piece of the streaming synthesis."""
        if text:
            self._chunks.append(text)

    def finish(self, result: FusionResult) -> list[Step]:
        """Settle every step from the final result; return the steps that changed."""
        changed: list[Step] = []
        if self.judge.state == "done" and result.judge_usage:
            tokens = result.judge_usage.output_tokens
            self.judge.note = _seconds_and_tokens(self.judge.elapsed(), tokens)
        if self.synthesis and self.synthesis.state == "running":
            tokens = result.usage.synthesis.output_tokens
            self.synthesis.end("done", _seconds_and_tokens(self.synthesis.elapsed(), tokens))
            changed.append(self.synthesis)
        self.halt("not run")
        return changed

    def halt(self, why: str) -> None:
        """Mark what never ran, or was still running, as stopped."""
        for step in self.steps:
            if step.state in ("waiting", "running"):
                step.end("skipped", why if step.state == "waiting" else "stopped")

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        with self.lock:
            table = self._table()
            text = "".join(self._chunks).strip() if self.preview else ""
        yield table
        if text:
            room = max(3, console.size.height - len(table.rows) - 3)
            lines = Text(text).wrap(console, max(20, options.max_width - 2))
            yield Text("")
            yield from (Padding(line, (0, 0, 0, 2)) for line in list(lines)[-room:])

    def _table(self) -> Table:
        table = Table.grid(padding=(0, 1))
        table.add_column(width=1, no_wrap=True)
        table.add_column(style="dim", no_wrap=True)
        table.add_column(style="bold", no_wrap=True)
        # Only the status column gives way on a narrow terminal, cut to one line.
        table.add_column()
        for step in self.steps:
            status = step.status(live=True)
            status.no_wrap, status.overflow = True, "ellipsis"
            table.add_row(step.icon(live=True), step.role, step.model, status)
        return table


class Display:
    """Shows a ``Progress`` live on a terminal, as log lines, or not at all."""

    def __init__(self, progress: Progress, console: Console, mode: Mode) -> None:
        self.progress = progress
        self.console = console
        self.mode = mode
        self._live: Live | None = None

    def __enter__(self) -> Display:
        if self.mode == "live":
            self._live = Live(
                self.progress, console=self.console, refresh_per_second=8, transient=False
            )
            self._live.start()
        return self

    def event(self, payload: Mapping[str, Any]) -> None:
        """Apply one custom stream event; in log mode, print the step it changed."""
        with self.progress.lock:
            step = self.progress.apply(payload)
        if step is not None and self.mode == "log":
            self.console.print(step.line(self.progress.width), soft_wrap=True)

    def token(self, text: str) -> None:
        """Add a piece of the streaming synthesis to the preview."""
        with self.progress.lock:
            self.progress.token(text)

    def finish(self, result: FusionResult) -> None:
        """Settle every step from the final result."""
        with self.progress.lock:
            changed = self.progress.finish(result)
        if self.mode == "log":
            for step in changed:
                self.console.print(step.line(self.progress.width), soft_wrap=True)

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        with self.progress.lock:
            if exc is not None:
                self.progress.halt("not run")
            self.progress.preview = False
        if self._live is not None:
            self._live.stop()
