"""Analysis entries that say nothing are dropped and counted, on every model, over the wire."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from langchain_core.messages import HumanMessage

from langfusion.graph import FusionContext, ModelRegistry, build_fusion_graph
from langfusion.graph.scaffolding import says_nothing
from tests.fakes import result_of, verdict
from tests.openai_server import OpenAIServer

QUESTION = "Should a small bakery lease or buy its first oven?"


@pytest.fixture
def server() -> Iterator[OpenAIServer]:
    with OpenAIServer() as running:
        running.script("p/one", "Lease: it keeps cash free for the first year.")
        running.script("p/two", "Buy: a used oven pays for itself in two years.")
        running.script("synth/model", "Lease first, then buy.")
        yield running


async def judged(server: OpenAIServer, reply: str) -> dict[str, object]:
    server.script("judge/model", reply)
    graph = build_fusion_graph(model_factory=ModelRegistry(base_url=server.base_url), web_tools=[])
    context = FusionContext(
        analysis_models=["p/one", "p/two"], model="judge/model", synthesis_model="synth/model"
    )
    out = await graph.ainvoke({"messages": [HumanMessage(QUESTION)]}, context=context)
    return result_of(out).model_dump(mode="json")


async def test_labels_slugs_and_fragments_are_dropped_and_counted(
    server: OpenAIServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OPENROUTER_API_KEY", "sk-or-test-entries")
    reply = verdict(
        consensus=["Leasing keeps cash free.", "Response B", "p/two", "Yes"],
        contradictions=[
            {
                "topic": "whether to own the oven",
                "stances": [
                    {"model": "Response A", "stance": "lease"},
                    {"model": "Response B", "stance": "Response A"},
                ],
            },
            {"topic": ":{", "stances": [{"model": "Response A", "stance": "no"}]},
        ],
        partial_coverage=[{"models": ["Response A"], "point": "consensus"}],
        unique_insights=[{"model": "Response B", "insight": "used ovens pay back fast"}],
        blind_spots=["response b", "maintenance contracts"],
    )
    result = await judged(server, reply)
    analysis = result["analysis"]
    assert isinstance(analysis, dict)
    assert analysis["consensus"] == ["Leasing keeps cash free."]
    assert [c["topic"] for c in analysis["contradictions"]] == ["whether to own the oven"]
    assert [s["stance"] for s in analysis["contradictions"][0]["stances"]] == ["lease"]
    assert analysis["partial_coverage"] == []
    assert analysis["blind_spots"] == ["maintenance contracts"]
    # Three consensus items, one stance, one contradiction, one point, one blind spot.
    assert result["analysis_meta"]["dropped_entries"] == 7  # type: ignore[index]


async def test_a_clean_analysis_drops_nothing(
    server: OpenAIServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OPENROUTER_API_KEY", "sk-or-test-entries")
    result = await judged(server, verdict())
    assert result["analysis_meta"]["dropped_entries"] == 0  # type: ignore[index]
    assert result["analysis"]["consensus"] == ["Carbon taxes reduce emissions."]  # type: ignore[index]


@pytest.mark.parametrize(
    ("text", "nothing"),
    [
        ("Response B", True),
        ("local/gemma-3-270m#2", True),
        ("~openai/gpt-latest agrees", True),
        (":{", True),
        ("Yes", True),
        ("consensus", True),
        ("2.5", True),
        ("1.0 / 3", True),
        ("Costs fall", False),
        ("1 in 3 people", False),
        ("&lt;/response>", True),
        ("&lt;/answer1>", True),
        ("&quot; Costs fall &quot;", False),
        ("Response A and B both cite the 2023 tariff", False),
    ],
)
def test_what_says_nothing(text: str, nothing: bool) -> None:
    assert says_nothing(text, ["p/one"]) is nothing
