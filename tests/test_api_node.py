"""OpenRouter's TypeScript SDK and the hosted tool's quick-start ``fetch``, run with node.

``.ci/run`` installs node and ``npm ci --prefix tests/js``; without them these
tests skip and say what is missing.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.api_harness import PANEL, TOKEN, ApiServer, WatchingServer, calls_fusion
from tests.api_harness import running_api as running_api  # the fixture api
from tests.api_harness import scripted_upstream as scripted_upstream  # the fixture server
from tests.fakes import verdict

JS = Path(__file__).parent / "js"
NODE = shutil.which("node")
SDK = JS / "node_modules" / "@openrouter" / "sdk"

needs_node = pytest.mark.skipif(
    NODE is None, reason="node is not installed (Debian: apt-get install nodejs npm)"
)
needs_sdk = pytest.mark.skipif(
    not SDK.is_dir(), reason="@openrouter/sdk is not installed: npm ci --prefix tests/js"
)


def node(script: str, **env: str) -> str:
    assert NODE is not None
    done = subprocess.run(
        [NODE, str(JS / script)],
        env={"PATH": os.environ.get("PATH", ""), **env},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


@needs_node
def test_the_hosted_tools_quick_start_fetch_gets_fusion(
    api: ApiServer, server: WatchingServer
) -> None:
    # The snippet names no judge: the request's model judges, between its two turns.
    server.script("caller/model", calls_fusion(), verdict(), "Experts disagree on growth effects.")
    printed = node(
        "quickstart.mjs",
        LANGFUSION_URL=f"{api.base_url}/chat/completions",
        LANGFUSION_KEY=TOKEN,
        LANGFUSION_MODEL="caller/model",
    )
    assert printed == "Experts disagree on growth effects.\n"
    assert all(server.requests_for(slug) for slug in PANEL)


@pytest.mark.slow
@needs_node
@needs_sdk
def test_openrouters_typescript_sdk_parses_every_body_and_event(
    api: ApiServer, server: WatchingServer
) -> None:
    # Three requests offer the tool: the streamed chat, the whole and the streamed response.
    server.script("caller/model", *[calls_fusion(), "Answer from the analysis."] * 3)
    out: dict[str, Any] = json.loads(
        node("sdk.mjs", LANGFUSION_BASE=api.base_url, LANGFUSION_KEY=TOKEN)
    )
    assert out["unknown"] == []
    assert out["chat"]["content"] == "The synthesis: recycle the revenue as dividends."
    assert out["chat"]["model"] == "synth/model"
    assert out["chat"]["details"] == ["reasoning.server_tool_call"]
    assert out["chat"]["executed"] == 1
    assert out["chatStream"]["text"] == "Answer from the analysis."
    assert out["chatStream"]["totalTokens"] > 0
    assert out["responses"] == {"output": ["openrouter:fusion", "message"], "status": "completed"}
    types = out["responsesStream"]["types"]
    assert "UNKNOWN" not in types
    for kind in (
        "response.fusion_call.in_progress",
        "response.fusion_call.panel.added",
        "response.fusion_call.panel.delta",
        "response.fusion_call.panel.completed",
        "response.fusion_call.analysis.in_progress",
        "response.fusion_call.analysis.completed",
        "response.fusion_call.completed",
        "response.output_text.delta",
        "response.completed",
    ):
        assert kind in types
    assert out["analyst"] == ["judge/model", "judge/model"]
