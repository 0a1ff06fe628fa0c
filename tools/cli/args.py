"""The ``langfusion`` argument parser; its run options are derived from ``FusionContext``."""

from __future__ import annotations

import argparse
import dataclasses
import functools
import types
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version
from typing import Any, Literal, Union, get_args, get_origin, get_type_hints

from langfusion.graph.context import API_KEY_ENV, PRESETS, FusionContext

# Which model runs where; every other parameter is about the model calls.
_MODEL_CHOICES = ("analysis_models", "model", "synthesis_model", "preset")

_EXAMPLES = """\
examples:
  langfusion ask "Where do economists disagree about a carbon tax?"
  langfusion ask --preset budget --no-web "Compare Raft and Paxos for a 5-node cluster."
  langfusion ask --models ~openai/gpt-latest,~google/gemini-pro-latest \\
      --judge ~anthropic/claude-opus-latest "Review this design: ..."
  git diff | langfusion ask - --json > review.json
  langfusion ask --estimate --max-tool-calls 2 "Compare Raft and Paxos."   # cost first

presets (panel -> judge):
{presets}

Without {key} and without --models or --preset, the local preset runs (the embedded
model; needs `pip install "langfusion[local]"`).
"""


DEFAULT_PORT = 8765

_SERVE_EXAMPLES = """\
examples:
  langfusion serve                      # then open http://127.0.0.1:8765/
  langfusion serve --preset budget --no-web --port 9000
  LANGFUSION_API_KEYS=my-token langfusion serve --workers 4

The OpenRouter-compatible API answers at http://HOST:PORT/api/v1 (and /v1) to
requests with "Authorization: Bearer <token>": a token of {tokens} or --api-key,
or, with none set, the one printed at start.

Without {key} the local preset runs the embedded model; with it set, the page can
use any OpenRouter model. The key is never sent to the browser or an API client.
"""


@dataclass(frozen=True)
class RunOption:
    """The command-line option of one ``FusionContext`` parameter."""

    name: str
    flag: str
    kwargs: Mapping[str, Any]
    listed: bool = False

    def value(self, given: Any) -> Any:
        """The parameter's value from what argparse collected."""
        if self.listed:  # "--models a,b --models c" is ["a", "b", "c"]
            return [slug.strip() for entry in given for slug in entry.split(",") if slug.strip()]
        return given


@functools.cache
def run_options() -> tuple[RunOption, ...]:
    """One option per ``FusionContext`` parameter, in declaration order.

    Raises:
        TypeError: A parameter whose type has no command-line form.
    """
    hints = get_type_hints(FusionContext)
    return tuple(_option(f, hints[f.name]) for f in FusionContext.parameters())


def _option(param: dataclasses.Field[Any], hint: Any) -> RunOption:
    meta = param.metadata
    flag = meta.get("option") or "--" + param.name.replace("_", "-")
    kwargs: dict[str, Any] = {"dest": param.name, "default": argparse.SUPPRESS}
    kwargs["help"] = _with_default(str(meta.get("help") or ""), param.default)
    if meta.get("metavar"):
        kwargs["metavar"] = meta["metavar"]

    kind = _without_none(hint)
    listed = get_origin(kind) is Sequence and get_args(kind) == (str,)
    if listed:
        kwargs["action"] = "append"
    elif kind is bool:
        kwargs["action"] = argparse.BooleanOptionalAction
    elif get_origin(kind) is Literal:
        kwargs["choices"] = get_args(kind)
    elif kind in (int, float):
        kwargs["type"] = kind
    elif kind is not str:
        raise TypeError(f"FusionContext.{param.name}: no command-line form for {hint!r}")
    return RunOption(param.name, flag, kwargs, listed=listed)


def _with_default(help_text: str, default: Any) -> str:
    if default is None or "default" in help_text:  # the help says what None means
        return help_text
    shown = ("on" if default else "off") if isinstance(default, bool) else format(default, "g")
    if help_text.endswith(")"):
        return f"{help_text[:-1]}; default: {shown})"
    return f"{help_text} (default: {shown})"


def _without_none(hint: Any) -> Any:
    if get_origin(hint) in (Union, types.UnionType):
        rest = [arg for arg in get_args(hint) if arg is not type(None)]
        if len(rest) == 1:
            return rest[0]
    return hint


def context_settings(args: argparse.Namespace) -> dict[str, Any]:
    """The ``FusionContext`` parameters given on the command line, and only those."""
    given = vars(args)
    return {o.name: o.value(given[o.name]) for o in run_options() if o.name in given}


def in_option_terms(message: str) -> str:
    """A ``FusionContext`` message that names a parameter, naming its option instead."""
    for option in run_options():
        if message.startswith(f"{option.name} "):
            return option.flag + message[len(option.name) :]
    return message


def _version() -> str:
    try:
        return version("langfusion")
    except PackageNotFoundError:  # running from a source tree that was never installed
        return "unknown"


def build_parser() -> argparse.ArgumentParser:
    """The ``langfusion`` argument parser, one subcommand per action.

    Returns:
        The parser; ``parse_args`` gives a namespace whose ``command`` names
        the subcommand and which holds only the options that were given.
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

    _add_run_options(ask)

    output = ask.add_argument_group("output")
    output.add_argument(
        "--json",
        action="store_true",
        help='print only {"result": ..., "answer": ...} as JSON on stdout',
    )
    output.add_argument(
        "--responses", action="store_true", help="also show every panel model's full answer"
    )
    output.add_argument(
        "--estimate",
        action="store_true",
        help="print the run's worst-case cost instead of running it (no model is called; "
        "with --json, the projection as JSON)",
    )

    serve = commands.add_parser(
        "serve",
        help="start the playground: a local web page to ask and watch the panel deliberate",
        description=(
            "Serve the fusion playground on this machine. The page asks a question, shows\n"
            "each panel model's answer as it streams, the judge and the synthesis, then the\n"
            "analysis, the answers and the usage; earlier runs are kept and can be reopened.\n"
            "The model options are the page's defaults; the API key stays on the server."
        ),
        epilog=_SERVE_EXAMPLES.format(key=API_KEY_ENV, tokens="LANGFUSION_API_KEYS"),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    serve.set_defaults(command_parser=serve)
    server = serve.add_argument_group("server")
    server.add_argument(
        "--host",
        default="127.0.0.1",
        help="address to listen on (default: 127.0.0.1, this machine only)",
    )
    server.add_argument(
        "--port", type=int, default=DEFAULT_PORT, help=f"port (default: {DEFAULT_PORT}; 0: any)"
    )
    server.add_argument(
        "--workers",
        type=int,
        default=1,
        metavar="N",
        help="processes serving requests (default: 1); the API keeps nothing between requests",
    )
    server.add_argument(
        "--api-key",
        action="append",
        dest="api_keys",
        metavar="TOKEN",
        help="a token API clients must send as 'Authorization: Bearer TOKEN' (repeatable; "
        "default: LANGFUSION_API_KEYS, or a fresh one printed at start)",
    )
    server.add_argument(
        "--db",
        metavar="PATH",
        help="SQLite file of the runs (default: ~/.local/state/langfusion/playground.sqlite)",
    )
    _add_run_options(serve)
    return parser


def _add_run_options(command: argparse.ArgumentParser) -> None:
    models = command.add_argument_group("models")
    calls = command.add_argument_group("model calls")
    for option in run_options():
        group = models if option.name in _MODEL_CHOICES else calls
        group.add_argument(option.flag, **option.kwargs)
