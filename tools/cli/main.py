"""``langfusion ask`` (run a question, show its progress and its result) and ``langfusion serve``.

Only the parser is loaded up front; the pipeline, the web tools and rich's
display are imported when a question is actually run, so that ``--help``,
``--version`` and usage errors answer at once.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from langfusion.graph.context import API_KEY_ENV, FusionContext
from langfusion.tools.cli.args import build_parser, context_settings, in_option_terms

if TYPE_CHECKING:
    from rich.console import Console
    from starlette.applications import Starlette

    from langfusion.graph import FusionGraph, ModelFactory
    from langfusion.graph.schema import FusionResult
    from langfusion.tools.cli.progress import Mode, Progress

__all__ = ["main"]

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130

LOCAL_NOTICE = (
    f"No {API_KEY_ENV} is set, so this runs on the small embedded local model (preset 'local'), "
    f"a demo rather than real deliberation; for real models set {API_KEY_ENV}, "
    "or pass --preset quality or --models."
)


def main(
    argv: Sequence[str] | None = None,
    *,
    build_graph: Callable[[], FusionGraph] | None = None,
    console: Console | None = None,
    err_console: Console | None = None,
    model_factory: ModelFactory | None = None,
) -> int:
    """Run the ``langfusion`` command.

    Args:
        argv: The arguments, without the program name; ``None`` reads ``sys.argv``.
        build_graph: Builds the fusion graph to run; defaults to
            ``build_fusion_graph(web_tools=web_tools)`` with the default model
            registry. Pass one built with your own ``model_factory`` to run
            against other models.
        console: Where the analysis and the answer go (default: stdout).
        err_console: Where progress and messages go (default: stderr).
        model_factory: Where ``ask --estimate`` reads prices and caps (default:
            the model registry); pass the factory ``build_graph`` runs on.

    Returns:
        The exit status: 0 ok, 1 nothing usable or an unexpected failure,
        2 usage error, 130 interrupted.
    """
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse's way of ending: --help, --version, usage errors
        return _exit_status(exc)

    from rich.console import Console

    out = console or Console(highlight=False)
    err = err_console or Console(stderr=True, highlight=False)
    try:
        if args.command == "serve":
            return _serve(args, args.command_parser, build_graph, out, err)
        if args.estimate:
            return _estimate(args, args.command_parser, model_factory, out, err)
        return _ask(args, args.command_parser, build_graph or _default_graph, out, err)
    except SystemExit as exc:  # a usage error found after parsing: a bad value, no question
        return _exit_status(exc)
    except KeyboardInterrupt:
        err.print("Interrupted.", style="yellow")
        return EXIT_INTERRUPTED


def _exit_status(exc: SystemExit) -> int:
    return exc.code if isinstance(exc.code, int) else EXIT_USAGE


def _default_graph() -> FusionGraph:
    from langfusion.graph import build_fusion_graph
    from langfusion.tools.web import web_tools

    return build_fusion_graph(web_tools=web_tools)


def _ask(
    args: argparse.Namespace,
    parser: argparse.ArgumentParser,
    build_graph: Callable[[], FusionGraph],
    out: Console,
    err: Console,
) -> int:
    ctx, question = _read_run(args, parser, err)

    from rich.text import Text

    from langfusion.graph.errors import redact
    from langfusion.graph.schema import FusionResult
    from langfusion.tools._sync import run_sync
    from langfusion.tools.cli.progress import Progress
    from langfusion.tools.cli.render import write_json, write_result

    if ctx.preset is None and ctx.preset_used == "local":
        err.print(Text(LOCAL_NOTICE, style="yellow"), soft_wrap=True)
    if err.is_terminal and not err.is_dumb_terminal:
        mode: Mode = "live"
    else:
        mode = "off" if args.json else "log"
    progress = Progress(ctx)
    try:
        result, answer = run_sync(lambda: _fuse(build_graph(), question, ctx, progress, err, mode))
    except Exception as exc:  # the program's edge: an unforeseen failure becomes one clear line
        message = redact(" ".join(f"{type(exc).__name__}: {exc}".split()))
        err.print(Text(f"langfusion: error: {message}", style="red"), soft_wrap=True)
        if args.json:
            # No reason of the closed set fits a failure nobody foresaw: the
            # result says what happened and claims no reason.
            write_json(out, FusionResult(status="error", error=message), "")
        return EXIT_FAILED

    if args.json:
        write_json(out, result, answer)
    else:
        shown = answer if ctx.synthesize else None
        write_result(out, result, shown, responses=args.responses)
    return EXIT_OK if result.status == "ok" else EXIT_FAILED


def _estimate(
    args: argparse.Namespace,
    parser: argparse.ArgumentParser,
    factory: ModelFactory | None,
    out: Console,
    err: Console,
) -> int:
    """Print the worst case of the run ``args`` describe; 1 when its budget would refuse it."""
    ctx, question = _read_run(args, parser, err)

    from rich.text import Text

    from langfusion.graph.cost import aestimate_cost, budget_refusal
    from langfusion.tools._sync import run_sync
    from langfusion.tools.cli.render import write_projection

    projection = run_sync(lambda: aestimate_cost(question, ctx, model_factory=factory))
    refused = None if ctx.max_cost_usd is None else budget_refusal(projection, ctx.max_cost_usd)
    write_projection(out, projection, as_json=args.json)
    if refused is not None:
        err.print(
            Text(f"langfusion: budget_exceeded: {refused.error}", style="red"), soft_wrap=True
        )
        return EXIT_FAILED
    return EXIT_OK


def _serve(
    args: argparse.Namespace,
    parser: argparse.ArgumentParser,
    build_graph: Callable[[], FusionGraph] | None,
    out: Console,
    err: Console,
) -> int:
    settings = context_settings(args)
    try:
        ctx = FusionContext.from_parameters(settings, owner="langfusion serve")
    except ValueError as exc:
        parser.error(in_option_terms(str(exc)))
    if not 0 <= args.port <= 65535:
        parser.error(f"--port must be from 0 to 65535; got {args.port}.")

    if not 1 <= args.workers <= 64:
        parser.error(f"--workers must be from 1 to 64; got {args.workers}.")

    from rich.text import Text

    from langfusion.tools.api import API_KEYS_ENV, BearerTokens, new_token
    from langfusion.tools.playground import bind, create_app, serve, url_of
    from langfusion.tools.playground.guard import LOOPBACK_NAMES
    from langfusion.tools.playground.serve import serve_workers

    given = [t for t in (args.api_keys or []) if t.strip()]
    made = None
    try:
        tokens = BearerTokens(given or None)
    except ValueError:
        made = new_token()
        tokens = BearerTokens([made])
    try:
        sock = bind(args.host, args.port)
    except OSError as exc:
        reason = exc.strerror or str(exc)
        err.print(Text(f"langfusion: error: cannot listen on {args.host}:{args.port}: {reason}"))
        return EXIT_FAILED

    def build_app() -> Starlette:
        return create_app(
            build_graph=build_graph,
            defaults=settings,
            db=args.db,
            host=args.host,
            api_tokens=tokens,
        )

    app = build_app() if args.workers == 1 else None
    if ctx.preset is None and ctx.preset_used == "local":
        err.print(Text(LOCAL_NOTICE, style="yellow"), soft_wrap=True)
    if args.host not in (*LOOPBACK_NAMES, "::1"):
        err.print(
            Text(
                f"Listening on {args.host}: anyone who can reach it can run fusions on this "
                "server's API key.",
                style="yellow",
            ),
            soft_wrap=True,
        )
    url = url_of(sock)
    out.print(Text(f"langfusion playground: {url}  (Ctrl-C stops it)"), soft_wrap=True)
    where = "the token below" if made else f"a token of --api-key or {API_KEYS_ENV}"
    out.print(
        Text(f"langfusion API: {url}api/v1  (Authorization: Bearer <{where}>)"), soft_wrap=True
    )
    if made:
        out.print(Text(f"API token: {made}"), soft_wrap=True)
    if app is not None:
        serve(app, sock)
    else:
        serve_workers(build_app, sock, args.workers)
    return EXIT_OK


def _read_run(
    args: argparse.Namespace, parser: argparse.ArgumentParser, err: Console
) -> tuple[FusionContext, str]:
    """The run ``ask``'s options describe and its question; a usage error for bad ones."""
    try:
        ctx = FusionContext.from_parameters(context_settings(args), owner="langfusion ask")
    except ValueError as exc:
        parser.error(in_option_terms(str(exc)))
    return ctx, _read_question(args.question, parser, err)


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


async def _fuse(
    graph: FusionGraph,
    question: str,
    ctx: FusionContext,
    progress: Progress,
    err: Console,
    mode: Mode,
) -> tuple[FusionResult, str]:
    from langchain_core.messages import HumanMessage

    from langfusion.graph.schema import FusionResult
    from langfusion.tools.cli.progress import Display

    final: Mapping[str, Any] = {}
    with Display(progress, err, mode) as display:
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
        if final.get("result") is None:
            raise RuntimeError("the fusion run ended without a result")
        result = FusionResult.model_validate(final["result"])
        answer = str(final.get("answer") or "")
        display.finish(result)
    return result, answer
