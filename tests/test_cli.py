"""The ``langfusion`` command, against a scripted OpenAI-compatible server or scripted models."""

from __future__ import annotations

import io
import json
import re
import subprocess
import sys
from collections.abc import AsyncIterator, Callable, Iterator
from importlib.metadata import version
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console

from langfusion.graph import PRESETS, FusionContext, FusionResult, ModelRegistry, build_fusion_graph
from langfusion.tools.cli import build_parser, main
from tests.fakes import FakeFactory, ScriptedModel, verdict
from tests.openai_server import OpenAIServer, Reply

SECRET = "sk-or-v1-CLISECRET0123456789abcdef"
QUESTION = "Where do economists disagree about a carbon tax?"
ANSWER = "A carbon tax cuts emissions; economists argue mostly about its effect on growth."
PANEL = ["--models", "p/1,p/2", "--judge", "judge/model", "--synthesis-model", "synth/model"]


@pytest.fixture
def server() -> Iterator[OpenAIServer]:
    with OpenAIServer() as running:
        running.script("p/1", "Emissions fall; the growth effect is negligible.")
        running.script("p/2", "Emissions fall; the growth cost is small but real.")
        running.script("judge/model", verdict())
        running.script("synth/model", ANSWER)
        yield running


@pytest.fixture
def registry(server: OpenAIServer, monkeypatch: pytest.MonkeyPatch) -> ModelRegistry:
    monkeypatch.setenv("OPENROUTER_API_KEY", SECRET)
    return ModelRegistry(base_url=server.base_url)


class RecordingGraph:
    """Runs the real graph and keeps the context each run was given."""

    def __init__(self, factory: Any) -> None:
        self.graph = build_fusion_graph(model_factory=factory, web_tools=[])
        self.contexts: list[FusionContext] = []

    def astream(self, graph_input: Any, **kwargs: Any) -> AsyncIterator[Any]:
        self.contexts.append(kwargs["context"])
        return self.graph.astream(graph_input, **kwargs)


def run(
    argv: list[str], factory: Any, capsys: pytest.CaptureFixture[str]
) -> tuple[int, str, str, RecordingGraph]:
    graph = RecordingGraph(factory)
    code = main(argv, build_graph=lambda: graph)  # type: ignore[arg-type,return-value]
    out, err = capsys.readouterr()
    return code, out, err, graph


def table_rows(out: str) -> list[list[str]]:
    """The cells of every table row: Markdown text (``|``) or as rich draws it on a terminal."""
    rows = []
    for line in out.splitlines():
        if line.startswith("|"):
            rows.append([c.strip() for c in re.split(r"(?<!\\)\|", line)[1:-1]])
        elif line.startswith(" ") and "  " in line.strip():
            rows.append(re.split(r"\s{2,}", line.strip()))
    return rows


def stance_lines(out: str) -> dict[str, str]:
    """The model on the analysis row of each stance of the contradiction."""
    return {
        row[2].removeprefix("effect on growth: "): row[1]
        for row in table_rows(out)
        if row[0] == "contradiction"
    }


def panel_row(out: str, slug: str) -> list[str]:
    """The panel table's row of one model."""
    (row,) = [row for row in table_rows(out) if row[0] == slug]
    return row


def test_ask_shows_progress_then_the_analysis_and_the_answer(
    registry: ModelRegistry, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err, _ = run(["ask", *PANEL, QUESTION], registry, capsys)
    assert code == 0
    assert "Carbon taxes reduce emissions." in out  # consensus
    assert "effect on growth" in out
    # who said what, by real slug (the judge saw them under shuffled labels)
    assert sorted(stance_lines(out)) == ["negligible", "small but real"]
    assert sorted(stance_lines(out).values()) == ["p/1", "p/2"]
    rows = {row[0]: row[1:] for row in table_rows(out)}
    assert rows["partial coverage"][0] in ("p/1", "p/2")
    assert rows["partial coverage"][1] == "border adjustments"
    assert rows["unique insight"][0] in ("p/1", "p/2")
    assert rows["unique insight"][1] == "dividends offset regressivity"
    assert rows["blind spot"] == ["none", "political feasibility"]
    assert panel_row(out, "p/1")[1] == "7"  # tokens out
    assert ANSWER in out
    assert out.index("| consensus |") < out.index("## Answer") < out.index(ANSWER)
    # stderr is not a terminal here: one log line per step as it settles
    settled = {tuple(line.split()[:3]) for line in err.splitlines() if line.startswith("✓")}
    assert settled == {
        ("✓", "panel", "p/1"),
        ("✓", "panel", "p/2"),
        ("✓", "judge", "judge/model"),
        ("✓", "synthesis", "synth/model"),
    }
    assert "done in" in err and "7 tokens" in err
    assert SECRET not in out + err and SECRET[:12] not in out + err


def test_terminal_output_is_live_and_rendered(registry: ModelRegistry) -> None:
    graph = build_fusion_graph(model_factory=registry, web_tools=[])
    out = Console(file=io.StringIO(), force_terminal=True, width=100, record=True)
    err = Console(file=io.StringIO(), force_terminal=True, width=100, record=True)
    code = main(["ask", *PANEL, QUESTION], build_graph=lambda: graph, console=out, err_console=err)
    assert code == 0
    screen = out.export_text()
    assert ["consensus", "all", "Carbon taxes reduce emissions."] in table_rows(screen)
    assert sorted(stance_lines(screen).values()) == ["p/1", "p/2"]
    assert ANSWER in screen
    assert "|" not in screen and "##" not in screen  # rendered, not Markdown text
    # the live display's last frame stays on screen: every step settled, with its numbers
    frames = err.export_text()  # every refresh, without the cursor moves between them
    # The last frame starts at the glyph of its first row, however wide rich pads it.
    last = [m.start() for m in re.finditer(r"\S\s+panel\s+p/1\b", frames)][-1]
    final_frame = [line.split() for line in frames[last:].splitlines() if line.strip()]
    assert [line[:3] for line in final_frame] == [
        ["✓", "panel", "p/1"],
        ["✓", "panel", "p/2"],
        ["✓", "judge", "judge/model"],
        ["✓", "synthesis", "synth/model"],
    ]
    assert all("done" in line and "in" in line for line in final_frame)


def test_markdown_answer_is_rendered_on_a_terminal(
    server: OpenAIServer, registry: ModelRegistry
) -> None:
    server.script("synth/model", "## Short answer\n\nIt **depends** on recycling the revenue.")
    out = Console(file=io.StringIO(), force_terminal=True, width=80, record=True)
    err = Console(file=io.StringIO(), width=80)
    graph = build_fusion_graph(model_factory=registry, web_tools=[])
    code = main(["ask", *PANEL, QUESTION], build_graph=lambda: graph, console=out, err_console=err)
    assert code == 0
    screen = out.export_text()
    assert "It depends on recycling the revenue." in screen
    assert "**" not in screen and "##" not in screen


def test_responses_option_shows_every_panel_answer(
    registry: ModelRegistry, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _, _ = run(["ask", "--responses", *PANEL, QUESTION], registry, capsys)
    assert code == 0
    lines = out.splitlines()
    for slug, answer in [
        ("p/1", "Emissions fall; the growth effect is negligible."),
        ("p/2", "Emissions fall; the growth cost is small but real."),
    ]:
        heading = lines.index(f"### {slug}")
        assert lines[heading + 1 : heading + 3] == ["", answer]
    assert "### p/1" not in run(["ask", *PANEL, QUESTION], registry, capsys)[1]


def test_json_prints_only_the_result_and_the_answer(
    registry: ModelRegistry, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err, _ = run(["ask", "--json", *PANEL, QUESTION], registry, capsys)
    assert code == 0
    data = json.loads(out)  # the whole of stdout is one JSON document
    assert set(data) == {"result", "answer"}
    result = data["result"]
    assert result["status"] == "ok"
    assert set(result["analysis"]) == {
        "consensus",
        "contradictions",
        "partial_coverage",
        "unique_insights",
        "blind_spots",
    }
    assert [r["model"] for r in result["responses"]] == ["p/1", "p/2"]
    assert result["failed_models"] == []
    stances = result["analysis"]["contradictions"][0]["stances"]
    assert sorted(s["model"] for s in stances) == ["p/1", "p/2"]
    assert data["answer"] == ANSWER
    assert err == ""  # stderr is no terminal: no progress


def test_options_reach_the_run_configuration_and_the_models(
    server: OpenAIServer, registry: ModelRegistry, capsys: pytest.CaptureFixture[str]
) -> None:
    server.script("p/3", "third answer")
    argv = [
        "ask",
        "--models",
        "p/1, p/2",
        "--models",
        "p/3",
        "--judge",
        "judge/model",
        "--synthesis-model",
        "synth/model",
        "--max-tool-calls",
        "3",
        "--max-tokens",
        "200",
        "--temperature",
        "0.4",
        "--reasoning",
        "low",
        "--timeout",
        "30",
        "--judge-timeout",
        "40",
        "--synthesis-timeout",
        "50",
        "--no-web",
        QUESTION,
    ]
    code, _, _, graph = run(argv, registry, capsys)
    assert code == 0
    (ctx,) = graph.contexts
    assert ctx.panel == ("p/1", "p/2", "p/3")
    assert (ctx.judge, ctx.synthesizer) == ("judge/model", "synth/model")
    assert ctx.max_tool_calls == 3 and ctx.max_completion_tokens == 200
    assert ctx.temperature == 0.4 and ctx.reasoning == "low"
    assert (ctx.timeout_s, ctx.judge_timeout_s, ctx.synthesis_timeout_s) == (30, 40, 50)
    assert ctx.web_tools is False
    body = server.requests_for("p/3")[0].body
    assert body["temperature"] == 0.4
    assert body["max_completion_tokens"] == 200
    assert body["reasoning_effort"] == "low"
    assert server.requests_for("judge/model")[0].body["temperature"] == 0


def test_no_synthesis_stops_at_the_analysis(
    server: OpenAIServer, registry: ModelRegistry, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err, graph = run(["ask", "--no-synthesis", *PANEL, QUESTION], registry, capsys)
    assert code == 0 and graph.contexts[0].synthesize is False
    assert sorted(stance_lines(out).values()) == ["p/1", "p/2"]
    assert "## Answer" not in out and ANSWER not in out
    assert server.requests_for("synth/model") == []
    assert {line.split()[1] for line in err.splitlines()} == {"panel", "judge"}


class ContextProbe:
    """A graph that keeps the context it is run with and ends at once, with an empty result."""

    def __init__(self) -> None:
        self.contexts: list[FusionContext] = []

    async def astream(self, graph_input: Any, **kwargs: Any) -> AsyncIterator[Any]:
        self.contexts.append(kwargs["context"])
        yield ("values", {"result": FusionResult(status="ok"), "answer": "probed"})


def probe(argv: list[str]) -> FusionContext:
    graph = ContextProbe()
    assert main(["ask", *argv, QUESTION], build_graph=lambda: graph) == 0  # type: ignore[arg-type,return-value]
    (ctx,) = graph.contexts
    return ctx


# One value other than the default for each FusionContext parameter, as a user spells it.
GIVEN: dict[str, tuple[list[str], Any]] = {
    "analysis_models": (["--models", "a/1,a/2", "--models", "a/3"], ("a/1", "a/2", "a/3")),
    "model": (["--judge", "j/1"], "j/1"),
    "synthesis_model": (["--synthesis-model", "s/1"], "s/1"),
    "max_tool_calls": (["--max-tool-calls", "3"], 3),
    "max_completion_tokens": (["--max-tokens", "200"], 200),
    "temperature": (["--temperature", "0.4"], 0.4),
    "reasoning": (["--reasoning", "low"], "low"),
    "preset": (["--preset", "budget"], "budget"),
    "timeout_s": (["--timeout", "30"], 30),
    "judge_timeout_s": (["--judge-timeout", "5"], 5),
    "synthesis_timeout_s": (["--synthesis-timeout", "7"], 7),
    "synthesize": (["--no-synthesis"], False),
    "web_tools": (["--no-web"], False),
    "judge_web_tools": (["--judge-web-tools"], True),
    "min_responses": (["--min-responses", "2"], 2),
    "max_retries": (["--max-retries", "0"], 0),
    "stream_panel_tokens": (["--stream-panel-tokens"], True),
    "quorum_grace_s": (["--quorum-grace", "2.5"], 2.5),
    "fallback_models": (["--fallback-models", "f/1,f/2"], ("f/1", "f/2")),
    "max_cost_usd": (["--max-cost-usd", "1.5"], 1.5),
}


def test_every_run_parameter_has_an_option() -> None:
    names = {f.name for f in FusionContext.parameters()}
    # A new parameter gets a line in GIVEN, whose option each test below parses for real.
    assert set(GIVEN) == names
    nothing_given = vars(build_parser().parse_args(["ask", QUESTION]))
    assert not names & set(nothing_given)  # unset options leave FusionContext's defaults


@pytest.mark.parametrize("name", sorted(GIVEN))
def test_a_given_option_reaches_the_context_and_only_it(
    name: str, capsys: pytest.CaptureFixture[str]
) -> None:
    argv, value = GIVEN[name]
    ctx = probe(argv)
    assert getattr(ctx, name) == value
    assert ctx == FusionContext(**{name: value})
    assert ("## Answer" in capsys.readouterr().out) is ctx.synthesize


def test_all_options_at_once_reach_the_context() -> None:
    ctx = probe([word for argv, _ in GIVEN.values() for word in argv])
    assert ctx.settings() == {name: value for name, (_, value) in GIVEN.items()}
    assert (ctx.panel, ctx.judge, ctx.synthesizer) == (("a/1", "a/2", "a/3"), "j/1", "s/1")


def test_the_positive_forms_of_the_switches() -> None:
    ctx = probe(["--no-web", "--web", "--synthesis", "--no-judge-web-tools"])
    assert (ctx.web_tools, ctx.synthesize, ctx.judge_web_tools) == (True, True, False)


def test_preset_picks_its_panel_and_judge(capsys: pytest.CaptureFixture[str]) -> None:
    budget = PRESETS["budget"]
    models: dict[str, Any] = {
        slug: ScriptedModel(replies=[f"from {slug}"]) for slug in budget.panel
    }
    models[budget.judge] = ScriptedModel(replies=[verdict(), "budget answer"])
    code, out, err, graph = run(
        ["ask", "--preset", "budget", "--no-web", QUESTION], FakeFactory(models), capsys
    )
    assert code == 0 and "budget answer" in out
    assert graph.contexts[0].panel == budget.panel
    assert graph.contexts[0].judge == budget.judge
    assert "OPENROUTER_API_KEY" not in err  # a named preset is no surprise


def test_question_from_stdin(
    server: OpenAIServer,
    registry: ModelRegistry,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(sys, "stdin", io.StringIO("  Is nuclear safer per TWh than wind?\n"))
    code, _, _, _ = run(["ask", "--json", *PANEL, "-"], registry, capsys)
    assert code == 0
    messages = server.requests_for("p/1")[0].body["messages"]
    assert messages[-1] == {"role": "user", "content": "Is nuclear safer per TWh than wind?"}


def test_words_are_joined_into_the_question(
    server: OpenAIServer, registry: ModelRegistry, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, _, _ = run(["ask", *PANEL, "is", "it", "worth", "it?"], registry, capsys)
    assert code == 0
    assert server.requests_for("p/1")[0].body["messages"][-1]["content"] == "is it worth it?"


@pytest.mark.parametrize(("argv", "stdin"), [(["ask", "  "], ""), (["ask", "-"], " \n")])
def test_an_empty_question_is_a_usage_error(
    argv: list[str],
    stdin: str,
    registry: ModelRegistry,
    server: OpenAIServer,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(sys, "stdin", io.StringIO(stdin))
    code, out, err, _ = run([*argv, *PANEL], registry, capsys)
    assert code == 2
    assert "the question is empty" in err and "usage: langfusion ask" in err
    assert out == "" and server.requests == []


def test_an_out_of_range_parameter_is_a_usage_error_naming_the_option(
    server: OpenAIServer, registry: ModelRegistry, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err, _ = run(["ask", "--max-tool-calls", "99", *PANEL, QUESTION], registry, capsys)
    assert code == 2
    assert "--max-tool-calls must be from 1 to 16; got 99." in err
    assert out == "" and server.requests == []


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (["--temperature", "3"], "--temperature must be from 0 to 2; got 3.0."),
        (["--timeout", "0"], "--timeout must be a positive number of seconds"),
        (["--judge-timeout", "-1"], "--judge-timeout must be a positive number of seconds"),
        (["--max-tokens", "0"], "--max-tokens must be at least 1; got 0."),
        (["--synthesis-model", " "], "--synthesis-model must be a non-empty model slug"),
        (["--models", "p/1,p/1"], "--models lists p/1 more than once"),
        (["--models", ","], "--models must name 1 to 8 models; got 0."),
        (["--models", ",".join(f"p/{i}" for i in range(9))], "--models must name 1 to 8"),
        (["--preset", "premium"], "invalid choice: 'premium'"),
        (["--reasoning", "max"], "invalid choice: 'max'"),
        (["--max-tool-calls", "many"], "invalid int value: 'many'"),
        (["--no-web=yes"], "argument --web/--no-web: ignored explicit argument 'yes'"),
    ],
)
def test_invalid_values_are_usage_errors(
    options: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["ask", *options, QUESTION]) == 2
    out, err = capsys.readouterr()
    assert message in err and out == ""


def test_unknown_option_and_missing_command_are_usage_errors(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["ask", "--panel-size", "3", QUESTION]) == 2
    assert "unrecognized arguments: --panel-size" in capsys.readouterr().err
    assert main([]) == 2
    assert "required: COMMAND" in capsys.readouterr().err


def test_every_panel_model_failing_exits_1(
    server: OpenAIServer, registry: ModelRegistry, capsys: pytest.CaptureFixture[str]
) -> None:
    server.script("p/1", Reply("bad request", status=400))
    server.script("p/2", Reply(f"Incorrect API key provided: {SECRET}", status=401))
    code, out, err, _ = run(["ask", *PANEL, QUESTION], registry, capsys)
    assert code == 1
    assert "**Fusion failed** (`all_panels_failed`)" in out
    assert panel_row(out, "p/1")[3].startswith("failed (invalid_request): HTTP 400")
    assert panel_row(out, "p/2")[3].startswith("failed (unauthorized): HTTP 401")
    assert "✗ panel" in err
    assert SECRET not in out + err

    code, out, _, _ = run(["ask", "--json", *PANEL, QUESTION], registry, capsys)
    assert code == 1
    result = json.loads(out)["result"]
    assert result["status"] == "error" and result["failure_reason"] == "all_panels_failed"
    assert [f["model"] for f in result["failed_models"]] == ["p/1", "p/2"]


def test_some_panel_failures_and_a_failed_judge_still_exit_0(
    server: OpenAIServer, registry: ModelRegistry, capsys: pytest.CaptureFixture[str]
) -> None:
    server.script("p/2", Reply("unknown model", status=404))
    server.script("judge/model", "I think they mostly agree.")
    code, out, err, _ = run(["ask", *PANEL, QUESTION], registry, capsys)
    assert code == 0
    assert panel_row(out, "p/2")[3] == "failed (model_not_found): HTTP 404: unknown model"
    assert "the judge failed (`judge_not_valid_json`)" in out
    assert ANSWER in out
    assert "! judge" in err


def test_a_missing_key_says_which_variable_to_set(capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["ask", "--models", "x/y", "--no-web", QUESTION])
    out = capsys.readouterr().out
    assert code == 1
    assert "missing_api_key" in out and "set OPENROUTER_API_KEY" in out


def local_models(answer: str = "a local answer") -> FakeFactory:
    local = PRESETS["local"]
    models: dict[str, Any] = {slug: ScriptedModel(replies=["small answer"]) for slug in local.panel}
    models[local.judge] = ScriptedModel(replies=[verdict(), answer])
    return FakeFactory(models)


def test_without_a_key_the_local_preset_runs_with_one_notice(
    capsys: pytest.CaptureFixture[str],
) -> None:
    code, out, err, graph = run(["ask", "--no-web", QUESTION], local_models(), capsys)
    assert code == 0 and "a local answer" in out
    assert graph.contexts[0].preset_used == "local" and graph.contexts[0].preset is None
    notice = [line for line in err.splitlines() if "OPENROUTER_API_KEY" in line]
    assert len(notice) == 1
    assert "local" in notice[0] and "--preset quality" in notice[0] and "--models" in notice[0]
    assert "OPENROUTER_API_KEY" not in out


def test_no_local_notice_when_the_local_preset_is_asked_for(
    capsys: pytest.CaptureFixture[str],
) -> None:
    code, _, err, _ = run(
        ["ask", "--preset", "local", "--no-web", QUESTION], local_models(), capsys
    )
    assert code == 0 and "OPENROUTER_API_KEY" not in err


def test_no_local_notice_when_a_key_is_set(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OPENROUTER_API_KEY", SECRET)
    quality = PRESETS["quality"]
    models: dict[str, Any] = {slug: ScriptedModel(replies=["answer"]) for slug in quality.panel}
    models[quality.judge] = ScriptedModel(replies=[verdict(), "quality answer"])
    code, out, err, graph = run(["ask", "--no-web", QUESTION], FakeFactory(models), capsys)
    assert code == 0 and "quality answer" in out
    assert graph.contexts[0].preset_used == "quality"
    assert "OPENROUTER_API_KEY" not in err


class FailingGraph:
    def __init__(self, error: BaseException) -> None:
        self.error = error

    async def astream(self, graph_input: Any, **kwargs: Any) -> AsyncIterator[Any]:
        yield ("custom", {"event": "panel_started", "model": "p/1"})
        raise self.error


def graph_of(error: BaseException) -> Callable[[], Any]:
    return lambda: FailingGraph(error)


def test_ctrl_c_exits_130_without_a_traceback(capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["ask", *PANEL, QUESTION], build_graph=graph_of(KeyboardInterrupt()))
    out, err = capsys.readouterr()
    assert code == 130
    assert "Interrupted." in err and "Traceback" not in err + out


def test_an_unexpected_failure_is_one_redacted_line_and_exit_1(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OPENROUTER_API_KEY", SECRET)
    error = RuntimeError(f"could not start the local model (token={SECRET})")
    assert main(["ask", *PANEL, QUESTION], build_graph=graph_of(error)) == 1
    out, err = capsys.readouterr()
    assert "langfusion: error: RuntimeError: could not start the local model" in err
    assert SECRET not in out + err and "Traceback" not in err

    assert main(["ask", "--json", *PANEL, QUESTION], build_graph=graph_of(error)) == 1
    out, err = capsys.readouterr()
    result = json.loads(out)["result"]
    assert result["status"] == "error" and "failure_reason" not in result
    assert result["error"].startswith("RuntimeError: could not start the local model")
    assert SECRET not in out + err


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--version"]) == 0
    assert capsys.readouterr().out.strip() == f"langfusion {version('langfusion')}"


def test_the_parser_loads_without_the_pipeline() -> None:
    code = "import sys, langfusion.tools.cli; print(' '.join(sys.modules))"
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True
    )
    loaded = {name.split(".")[0] for name in done.stdout.split()}
    heavy = {"langchain_core", "langgraph", "openai", "httpx", "pydantic", "rich"}
    assert loaded & heavy == set()  # `langfusion --help` answers without them


def test_the_installed_command_answers_version_and_help() -> None:
    script = Path(sys.executable).parent / "langfusion"
    assert script.exists(), "pip install -e . installs the `langfusion` console script"

    def run_command(*argv: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(argv, capture_output=True, text=True, timeout=120, check=False)

    done = run_command(str(script), "--version")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == f"langfusion {version('langfusion')}"

    done = run_command(sys.executable, "-m", "langfusion.tools.cli", "--help")
    assert done.returncode == 0 and "ask" in done.stdout

    done = run_command(str(script), "ask", "--help")
    assert done.returncode == 0
    for option in (
        "--models",
        "--judge",
        "--preset",
        "--max-tool-calls",
        "--json",
        "--web, --no-web",
        "--synthesis, --no-synthesis",
        "--judge-web-tools",
    ):
        assert option in done.stdout
    assert "~anthropic/claude-opus-latest" in done.stdout  # the presets are spelled out
