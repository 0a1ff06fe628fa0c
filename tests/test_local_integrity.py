"""The embedded model's output carries no prompt scaffolding and cites only its panel.

Real fusions on the ``local`` preset's model: every panel answer, the
synthesis and the analysis are checked for tags, the template's turn labels
and runs of words from langfusion's own prompts.
"""

from __future__ import annotations

import importlib.util

import pytest
from langchain_core.messages import HumanMessage, SystemMessage

from benchmarks.local_output import cited_models, scaffolding, scaffolding_found
from langfusion.graph import FusionContext, build_fusion_graph
from langfusion.graph.context import LOCAL_SLUG
from langfusion.graph.models.local.catalog import embedded_model
from langfusion.tools import FusionChatModel
from tests.fakes import result_of

pytestmark = [
    pytest.mark.local_model,
    pytest.mark.skipif(
        importlib.util.find_spec("llama_cpp") is None
        or importlib.util.find_spec(embedded_model(LOCAL_SLUG).package) is None,
        reason='needs the [local] extra: pip install "langfusion[local]"',
    ),
]

PANEL = {f"{LOCAL_SLUG}#1", f"{LOCAL_SLUG}#2", f"{LOCAL_SLUG}#3"}


async def test_a_local_fusion_shows_no_scaffolding_and_cites_only_its_panel() -> None:
    graph = build_fusion_graph()
    out = await graph.ainvoke(
        {"messages": [HumanMessage("Should a small city build a tram or a bus line?")]},
        context=FusionContext(preset="local", web_tools=False),
    )
    result = result_of(out).model_dump(mode="json")
    assert result["status"] == "ok"
    assert len(result["responses"]) == 3
    assert out["answer"].strip()
    assert result["analysis"] is not None, result.get("failure_reason")
    found = scaffolding_found(result, out["answer"])
    assert found == {"responses": [[], [], []], "answer": [], "analysis": []}, found
    assert cited_models(result["analysis"]) <= PANEL
    assert result["analysis_meta"]["responses_compared"] == 3
    assert result["analysis_meta"]["dropped_citations"] == []


async def test_the_local_alias_answers_cleanly_with_the_askers_instructions() -> None:
    alias = FusionChatModel(preset="local", web_tools=False)
    message = await alias.ainvoke(
        [SystemMessage("Answer in one short paragraph."), HumanMessage("How can I sleep better?")]
    )
    assert str(message.content).strip()
    assert scaffolding(str(message.content)) == [], message.content
    fusion = message.response_metadata["fusion"]
    assert all(scaffolding(r["content"]) == [] for r in fusion["responses"])
    assert cited_models(fusion["analysis"]) <= PANEL
