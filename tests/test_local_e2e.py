"""One real fusion on the embedded local model, through the command line, end to end."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from langfusion.graph import FusionResult
from langfusion.graph.context import LOCAL_SLUG


def llama_servers(marker: str = "") -> set[int]:
    """llama.cpp servers whose command line names ``marker`` (this test's cache folder).

    With a marker, other llama.cpp servers on the machine (another test run, a
    notebook) are not counted; without one, every llama.cpp server is.
    """
    pids = set()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                cmdline = (entry / "cmdline").read_bytes()
            except OSError:
                continue
            if b"llama_child.py" in cmdline and marker.encode() in cmdline:
                pids.add(int(entry.name))
    return pids


@pytest.mark.local_model
def test_cli_runs_a_real_local_fusion_and_leaves_no_server_behind(tmp_path: Path) -> None:
    cache = str(tmp_path / "cache")
    env = {k: v for k, v in os.environ.items() if not k.endswith("_API_KEY")}
    env["LANGFUSION_CACHE_DIR"] = cache
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "langfusion.tools.cli",
            "ask",
            "--preset",
            "local",
            "--json",
            "What are the trade-offs of nuclear power?",
        ],
        capture_output=True,
        text=True,
        timeout=600,
        env=env,
        stdin=subprocess.DEVNULL,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    out = json.loads(run.stdout)
    result = FusionResult.model_validate(out["result"])
    assert result.status == "ok"
    assert [r.model for r in result.responses] == [f"{LOCAL_SLUG}#{n}" for n in (1, 2, 3)]
    assert all(r.content.strip() for r in result.responses)
    assert result.analysis is not None, result.failure_reason
    assert out["answer"].strip()
    assert result.usage.total.total_tokens > 0
    deadline = time.monotonic() + 10
    while llama_servers(cache) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not llama_servers(cache), "the llama.cpp server outlived the command"
