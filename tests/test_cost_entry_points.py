"""Cost through every entry point: the CLI, the HTTP API, the playground and the alias."""

from __future__ import annotations

import json
from typing import Any

import pytest
from langchain_core.messages import HumanMessage
from rich.console import Console

from langfusion.graph import ModelRegistry, build_fusion_graph
from langfusion.tools import FusionChatModel
from langfusion.tools.cli import main
from tests.api_harness import PANEL, ApiServer, WatchingServer, ask, fusion_tool
from tests.api_harness import running_api as running_api  # the fixture api
from tests.api_harness import scripted_upstream as scripted_upstream  # the fixture server

QUESTION = "Should we adopt a carbon tax?"
MODELS = ["--models", ",".join(PANEL), "--judge", "judge/model", "--synthesis-model", "synth/model"]


def listed(slug: str, prompt: float, completion: float) -> dict[str, Any]:
    return {
        "id": slug,
        "pricing": {"prompt": str(prompt), "completion": str(completion)},
        "context_length": 64000,
        "top_provider": {"max_completion_tokens": 2000},
    }


@pytest.fixture(autouse=True)
def _estimated_tokens(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LANGFUSION_TOKEN_COUNTING", "estimate")


@pytest.fixture(autouse=True)
def _listed_prices(server: WatchingServer) -> None:
    server.models = [
        listed(slug, 1e-6, 4e-6) for slug in (*PANEL, "judge/model", "synth/model", "caller/model")
    ]


def cli(
    argv: list[str], registry: ModelRegistry, capsys: pytest.CaptureFixture[str]
) -> tuple[int, str, str]:
    code = main(
        argv,
        build_graph=lambda: build_fusion_graph(model_factory=registry, web_tools=[]),
        model_factory=registry,
        console=Console(width=200, highlight=False),
        err_console=Console(stderr=True, width=200, highlight=False),
    )
    out, err = capsys.readouterr()
    return code, out, err


def test_ask_estimate_prints_the_worst_case_and_calls_no_model(
    server: WatchingServer, capsys: pytest.CaptureFixture[str]
) -> None:
    registry = ModelRegistry(base_url=server.base_url)
    code, out, _ = cli(
        ["ask", "--estimate", *MODELS, "--max-tokens", "500", QUESTION], registry, capsys
    )
    assert code == 0
    assert "Worst case: at most $" in out and "| judge | judge/model | 1 |" in out
    code, out, _ = cli(
        ["ask", "--estimate", "--json", *MODELS, "--no-web", "--max-tokens", "500", QUESTION],
        registry,
        capsys,
    )
    projection = json.loads(out)
    assert code == 0 and projection["complete"] and projection["total_usd"] > 0
    assert {c["model"] for c in projection["calls"]} == {*PANEL, "judge/model", "synth/model"}
    assert server.requests == []

    budget = projection["total_usd"] / 10
    code, _, err = cli(
        ["ask", "--estimate", *MODELS, "--no-web", "--max-tokens", "500", "--max-cost-usd",
         str(budget), QUESTION],
        registry,
        capsys,
    )  # fmt: skip
    assert code == 1 and "budget_exceeded" in err
    assert server.requests == []


def test_ask_shows_the_cost_of_each_panelist_and_of_the_run(
    server: WatchingServer, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = cli(
        ["ask", *MODELS, "--no-web", QUESTION], ModelRegistry(base_url=server.base_url), capsys
    )
    assert code == 0
    header = next(line for line in out.splitlines() if line.startswith("| model | tokens out"))
    assert header.rstrip().endswith("| cost |")
    assert "at list prices (panel $" in out


def test_a_run_over_its_budget_is_refused_by_the_cli_before_any_call(
    server: WatchingServer, capsys: pytest.CaptureFixture[str]
) -> None:
    registry = ModelRegistry(base_url=server.base_url)
    code, out, _ = cli(["ask", *MODELS, "--max-cost-usd", "0.000001", QUESTION], registry, capsys)
    assert code == 1
    assert "budget_exceeded" in out and "Worst case: at most $" in out
    assert server.requests == []


@pytest.mark.parametrize("path", ["/chat/completions", "/responses"])
def test_the_api_answers_estimate_true_with_the_projection(
    api: ApiServer, server: WatchingServer, path: str
) -> None:
    field = "messages" if path == "/chat/completions" else "input"
    with api.client() as client:
        alias = client.post(
            path, json={"model": "openrouter/fusion", field: ask(QUESTION), "estimate": True}
        )
        tool = client.post(
            path,
            json={
                "model": "caller/model",
                field: ask(QUESTION),
                "tools": [fusion_tool(max_tool_calls=2)],
                "estimate": True,
            },
        )
        plain = client.post(path, json={"model": "caller/model", field: ask(), "estimate": True})
    assert alias.status_code == 200, alias.text
    projection = alias.json()
    assert projection["complete"] and projection["total_usd"] > 0
    assert {c["step"] for c in projection["calls"]} == {"panel", "judge", "synthesis"}
    assert tool.status_code == 200, tool.text
    (answer,) = [c for c in tool.json()["calls"] if c["step"] == "synthesis"]
    assert answer["model"] == "caller/model"  # the calling model writes the answer
    assert plain.status_code == 400 and "runs no fusion" in plain.json()["error"]["message"]
    assert server.requests == []


def test_the_playground_estimates_before_ask(api: ApiServer, server: WatchingServer) -> None:
    with api.client(base="") as client:
        response = client.post("/api/estimate", json={"question": QUESTION, "web_tools": False})
        empty = client.post("/api/estimate", json={"question": " "})
    assert response.status_code == 200, response.text
    data = response.json()
    assert data["projection"]["total_usd"] > 0 and data["refused"] is None
    assert set(data["projection"]["models"]) == {*PANEL, "judge/model", "synth/model"}
    assert empty.status_code == 400
    assert server.requests == []


async def test_the_alias_reports_the_run_cost_in_its_response_metadata(
    server: WatchingServer,
) -> None:
    alias = FusionChatModel(
        model_factory=ModelRegistry(base_url=server.base_url),
        analysis_models=PANEL,
        model="judge/model",
        synthesis_model="synth/model",
        web_tools=False,
    )
    message = await alias.ainvoke([HumanMessage(QUESTION)])
    total = message.response_metadata["fusion"]["usage"]["total"]
    assert message.response_metadata["cost"] == pytest.approx(total["cost"]) and total["cost"] > 0
    assert message.response_metadata["cost_source"] == "price_table"
