"""The public surface: what users import, and the graph's shape."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from langchain_tests.unit_tests import ToolsUnitTests

import langfusion.graph
import langfusion.tools
from langfusion.graph import build_fusion_graph
from langfusion.tools import FusionTool
from tests.fakes import FakeFactory, ScriptedModel, verdict

SNAPSHOT = Path(__file__).parent / "snapshots" / "fusion_graph.mmd"


def test_graph_exports() -> None:
    assert sorted(langfusion.graph.__all__) == [
        "ACTIVE_DEPTH",
        "Analysis",
        "AnalysisMeta",
        "Citation",
        "Contradiction",
        "CostProjection",
        "DEPTH_HEADER",
        "DroppedCitation",
        "FailedModel",
        "FusionContext",
        "FusionGraph",
        "FusionInput",
        "FusionOutput",
        "FusionResult",
        "FusionState",
        "JudgeVerdict",
        "MissingAPIKeyError",
        "ModelFactory",
        "ModelRegistry",
        "ModelTraits",
        "PRESETS",
        "PanelResponse",
        "PartialCoverage",
        "Preset",
        "PricesModels",
        "Pricing",
        "ProjectedCall",
        "RunUsage",
        "Stance",
        "UniqueInsight",
        "Usage",
        "aestimate_cost",
        "build_fusion_graph",
        "default_preset",
        "default_registry",
        "estimate_cost",
        "judge_schema",
        "register_model",
        "result_markdown",
    ]


def test_tools_exports() -> None:
    assert sorted(langfusion.tools.__all__) == [
        "FUSION_DESCRIPTION",
        "FusionChatModel",
        "FusionError",
        "FusionTool",
        "FusionToolInput",
        "WebFetchTool",
        "WebSearchTool",
        "web_fetch",
        "web_search",
        "web_tools",
        "with_fusion",
    ]


def test_graph_drawing_matches_the_snapshot() -> None:
    graph = build_fusion_graph(model_factory=FakeFactory({}), web_tools=[]).get_graph()
    assert SNAPSHOT.exists(), f"{SNAPSHOT} is missing: the drawing must be reviewed, not written"
    assert graph.draw_mermaid(with_styles=False) == SNAPSHOT.read_text()
    # The drawing without styles shows edges only; the error handlers have none.
    assert sorted(graph.nodes) == [
        "__end__",
        "__error_handler__analyze",
        "__error_handler__judge",
        "__error_handler__synthesize",
        "__start__",
        "analyze",
        "judge",
        "prepare",
        "report",
        "synthesize",
        "tally",
    ]


def test_the_drawing_shows_where_a_run_ends_early() -> None:
    drawing = build_fusion_graph(model_factory=FakeFactory({}), web_tools=[]).get_graph()
    ends = {edge.source for edge in drawing.edges if edge.target == "__end__"}
    assert {"prepare", "tally", "report"} <= ends
    conditional = {(e.source, e.target) for e in drawing.edges if e.conditional}
    assert ("judge", "report") in conditional and ("judge", "synthesize") in conditional


def test_the_graph_reads_and_writes_narrow_schemas() -> None:
    graph = build_fusion_graph(model_factory=FakeFactory({}), web_tools=[])
    assert set(graph.get_input_jsonschema()["properties"]) == {
        "messages",
        "depth",
        "reuse",
        "synthesis_options",
    }
    assert set(graph.get_output_jsonschema()["properties"]) == {"result", "answer"}


def test_judge_schema_is_strict_ready() -> None:
    schema = langfusion.graph.judge_schema()
    assert list(schema["properties"])[0] == "reasoning"

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            assert "default" not in node and "$ref" not in node
            assert "maxItems" not in node and "maxLength" not in node
            if node.get("type") == "object":
                assert node["additionalProperties"] is False
                assert set(node["required"]) == set(node["properties"])
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(schema)
    capped = langfusion.graph.judge_schema(capped=True)
    assert capped["properties"]["consensus"]["maxItems"] == 3


def _tool_factory() -> FakeFactory:
    return FakeFactory(
        {
            "p/one": ScriptedModel(replies=["an answer"]),
            "judge/model": ScriptedModel(replies=[verdict()]),
        }
    )


class TestFusionToolStandard(ToolsUnitTests):
    @property
    def tool_constructor(self) -> type[FusionTool]:
        return FusionTool

    @property
    def tool_constructor_params(self) -> dict[str, Any]:
        return {
            "analysis_models": ["p/one"],
            "model": "judge/model",
            "model_factory": _tool_factory(),
        }

    @property
    def tool_invoke_params_example(self) -> dict[str, Any]:
        return {"prompt": "Compare Raft and Paxos for a small metadata store."}


def test_reading_a_result_loads_no_model_stack() -> None:
    import subprocess
    import sys

    script = (
        "import sys, langfusion.graph.schema, langfusion.graph.context\n"
        "print(sorted(m for m in ('langgraph', 'langchain_core', 'langchain_openai', 'openai')"
        " if m in sys.modules))\n"
    )
    run = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() == "[]"
