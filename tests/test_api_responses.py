"""The API's Responses endpoint, and what a client that leaves does to the upstream calls."""

from __future__ import annotations

import json
import socket
import time
from typing import Any

import pytest

from tests.api_harness import (
    PANEL,
    TOKEN,
    ApiServer,
    WatchingServer,
    calls_fusion,
    fusion_tool,
    sse_data,
)
from tests.api_harness import running_api as running_api  # the fixture api
from tests.api_harness import scripted_upstream as scripted_upstream  # the fixture server
from tests.openai_server import Reply


def stream_events(api: ApiServer, body: dict[str, Any]) -> list[dict[str, Any]]:
    with api.client() as client:
        with client.stream("POST", "/responses", json={**body, "stream": True}) as response:
            assert response.status_code == 200
            return [e for e in sse_data(response.iter_lines()) if e != "[DONE]"]


def test_a_response_holds_the_fusion_item_before_the_message(
    api: ApiServer, server: WatchingServer
) -> None:
    server.script("caller/model", calls_fusion(), "Answer from the analysis.")
    server.script(
        "p/one",
        Reply(
            "A cited view.",
            annotations=[
                {
                    "type": "url_citation",
                    "url_citation": {"url": "https://example.org/tax", "title": "Tax study"},
                }
            ],
        ),
    )
    with api.client() as client:
        body = client.post(
            "/responses",
            json={
                "model": "caller/model",
                "input": "Should we adopt a carbon tax?",
                "tools": [fusion_tool(model="judge/model")],
            },
        ).json()
    assert body["object"] == "response" and body["status"] == "completed"
    fusion, message = body["output"]
    assert fusion["type"] == "openrouter:fusion" and fusion["status"] == "completed"
    assert {r["model"] for r in fusion["responses"]} == set(PANEL)
    assert fusion["analysis"]["consensus"] == ["Carbon taxes reduce emissions."]
    assert fusion["sources"] == [{"title": "Tax study", "url": "https://example.org/tax"}]
    assert message["type"] == "message"
    assert message["content"][0]["text"] == "Answer from the analysis."
    assert body["output_text"] == "Answer from the analysis."
    assert body["usage"]["server_tool_use_details"]["tool_calls_executed"] == 1
    assert body["usage"]["input_tokens"] == 11 * len(server.requests)


def test_the_streamed_fusion_is_told_by_openrouters_events(
    api: ApiServer, server: WatchingServer
) -> None:
    long = " ".join(f"word{i}" for i in range(120))
    server.script("p/one", long)
    server.script("p/two", Reply("refused", status=403))
    events = stream_events(api, {"model": "openrouter/fusion", "input": "Carbon tax?"})
    kinds = [e["type"] for e in events]
    assert kinds[:2] == ["response.created", "response.in_progress"]
    assert kinds[-1] == "response.completed"
    assert [e["sequence_number"] for e in events] == list(range(len(events)))
    fusion = [e for e in events if e["type"].startswith("response.fusion_call")]
    order = [e["type"].removeprefix("response.fusion_call.") for e in fusion]
    assert order[0] == "in_progress" and order[-1] == "completed"
    assert order.index("analysis.in_progress") > order.index("panel.completed")
    assert order.index("analysis.completed") > order.index("analysis.in_progress")
    item_ids = {e["item_id"] for e in fusion}
    assert len(item_ids) == 1
    deltas = [e for e in fusion if e["type"].endswith("panel.delta") and e["model"] == "p/one"]
    assert 1 <= len(deltas) < 120 / 4  # coalesced, not one event per token
    assert "".join(d["delta"] for d in deltas) == long
    (done,) = [e for e in fusion if e["type"].endswith("panel.completed")]
    assert done["model"] == "p/one" and done["content"] == long
    (failed,) = [e for e in fusion if e["type"].endswith("panel.failed")]
    assert failed["model"] == "p/two" and failed["status_code"] == 403
    (judging,) = [e for e in fusion if e["type"].endswith("analysis.in_progress")]
    assert judging["analyst_model"] == judging["judge_model"] == "judge/model"
    text = "".join(e["delta"] for e in events if e["type"] == "response.output_text.delta")
    assert text == "The synthesis: recycle the revenue as dividends."
    assert all(e["logprobs"] == [] for e in events if e["type"] == "response.output_text.delta")
    added = [e for e in events if e["type"] == "response.output_item.added"]
    assert [a["item"]["type"] for a in added] == ["openrouter:fusion", "message"]
    completed = events[-1]["response"]
    assert [o["type"] for o in completed["output"]] == ["openrouter:fusion", "message"]
    assert completed["model"] == "synth/model"


def test_responses_input_round_trips_the_fusion_item_and_reuses_it(
    api: ApiServer, server: WatchingServer
) -> None:
    weather = {
        "type": "function",
        "name": "get_weather",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
    }
    server.script("synth/model", Reply(tool_call=("get_weather", {"city": "Oslo"})), "Sunny it is.")
    request = {"model": "openrouter/fusion", "input": "Carbon tax, and the weather?"}
    with api.client() as client:
        first = client.post("/responses", json={**request, "tools": [weather]}).json()
        assert len(server.requests_for("p/one")) == 1
        fusion, call = first["output"]
        assert call["type"] == "function_call" and call["name"] == "get_weather"
        again = client.post(
            "/responses",
            json={
                **request,
                "tools": [weather],
                "input": [
                    {"role": "user", "content": request["input"]},
                    fusion,
                    call,
                    {"type": "function_call_output", "call_id": call["call_id"], "output": "21 C"},
                ],
            },
        ).json()
    assert again["output_text"] == "Sunny it is."
    assert len(server.requests_for("p/one")) == 1
    assert again["usage"]["server_tool_use_details"]["tool_calls_executed"] == 0


def test_previous_response_id_is_refused_the_server_keeps_nothing(api: ApiServer) -> None:
    with api.client() as client:
        response = client.post(
            "/responses", json={"model": "m", "input": "hi", "previous_response_id": "resp_1"}
        )
    assert response.status_code == 400
    assert "keeps no responses" in response.json()["error"]["message"]


# A client that leaves.


def _send_and_leave(api: ApiServer, body: dict[str, Any], started: Any) -> None:
    """Post ``body`` over a raw socket, then close it once ``started()`` holds."""
    payload = json.dumps(body).encode()
    head = (
        f"POST /api/v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1:{api.url.rsplit(':', 1)[1]}\r\n"
        f"Authorization: Bearer {TOKEN}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(payload)}\r\n\r\n"
    ).encode()
    port = int(api.url.rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", port), timeout=20) as sock:
        sock.sendall(head + payload)
        deadline = time.monotonic() + 20
        while not started():
            assert time.monotonic() < deadline, "the upstream calls never started"
            time.sleep(0.02)


@pytest.mark.parametrize("stream", [False, True])
def test_a_client_that_disconnects_closes_every_upstream_call(
    api: ApiServer, server: WatchingServer, stream: bool
) -> None:
    server.script("p/one", Reply(hang=True))
    server.script("p/two", Reply(hang=True))
    body = {"model": "openrouter/fusion", "messages": [{"role": "user", "content": "Why?"}]}
    _send_and_leave(
        api,
        {**body, "stream": stream},
        lambda: all(server.requests_for(slug) for slug in PANEL),
    )
    deadline = time.monotonic() + 10
    while not all(server.closed(slug) for slug in PANEL):
        assert time.monotonic() < deadline, "an upstream connection stayed open"
        time.sleep(0.02)
    assert server.requests_for("judge/model") == []


def test_the_responses_body_is_json_the_official_parsers_read(
    api: ApiServer, server: WatchingServer
) -> None:
    with api.client() as client:
        body = client.post("/responses", json={"model": "openrouter/fusion", "input": "Why?"})
    parsed = json.loads(body.text)
    assert parsed["output"][0]["type"] == "openrouter:fusion"
    assert all(v is not None for v in parsed["output"][0].values())
