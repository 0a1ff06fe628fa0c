"""``langfusion serve`` in subprocesses: tokens, workers, one conversation across two."""

from __future__ import annotations

import json

import httpx
import pytest

from tests.api_harness import (
    CANARY,
    PANEL,
    TOKEN,
    WatchingServer,
    calls_fusion,
    panel_calls,
    printed_token,
    serve_process,
)
from tests.api_harness import scripted_upstream as scripted_upstream  # the fixture server
from tests.openai_server import Reply

WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
    },
}


def post(base: str, body: dict[str, object], token: str = TOKEN) -> httpx.Response:
    return httpx.post(
        f"{base}/chat/completions",
        json=body,
        headers={"authorization": f"Bearer {token}"},
        trust_env=False,
        timeout=60,
    )


@pytest.mark.slow
def test_serve_makes_and_prints_a_token_when_none_is_set(server: WatchingServer) -> None:
    server.script("caller/model", "Hello.")
    with serve_process(server, env={"LANGFUSION_API_KEYS": ""}) as (base, _, output):
        token = printed_token(output)
        assert token is not None and token != TOKEN
        body = {"model": "caller/model", "messages": [{"role": "user", "content": "hi"}]}
        assert post(base, body, token).json()["choices"][0]["message"]["content"] == "Hello."
        assert post(base, body, TOKEN).status_code == 401


@pytest.mark.slow
def test_one_conversation_across_two_server_processes_reuses_its_analysis(
    server: WatchingServer,
) -> None:
    server.script(
        "caller/model",
        calls_fusion(),
        Reply(tool_call=("get_weather", {"city": "Oslo"})),
        "Final answer, with the weather.",
    )
    request = {
        "model": "caller/model",
        "messages": [{"role": "user", "content": "Carbon tax, and the weather in Oslo?"}],
        "tools": [{"type": "openrouter:fusion", "parameters": {"model": "judge/model"}}, WEATHER],
    }
    with serve_process(server, "--workers", "2") as (first_base, _, first_output):
        assert printed_token(first_output) is None  # LANGFUSION_API_KEYS is set
        first = post(first_base, request).json()
    message = first["choices"][0]["message"]
    (call,) = message["tool_calls"]
    assert len(server.requests_for("p/one")) == 1
    conversation = [
        *request["messages"],  # type: ignore[misc]
        message,
        {"role": "tool", "tool_call_id": call["id"], "content": "Sunny."},
    ]
    with serve_process(server) as (second_base, _, second_output):
        second = post(second_base, {**request, "messages": conversation}).json()
    assert second["choices"][0]["message"]["content"] == "Final answer, with the weather."
    assert panel_calls(server) == len(PANEL)
    # The second process put the recorded fusion back before the calling model's next turn.
    replayed = server.requests_for("caller/model")[-1].body["messages"]
    assert [m["role"] for m in replayed] == ["user", "assistant", "tool", "assistant", "tool"]
    assert json.loads(replayed[2]["content"])["status"] == "ok"
    for text in ("".join(first_output), "".join(second_output), json.dumps([first, second])):
        assert CANARY not in text


@pytest.mark.slow
def test_no_upstream_key_in_what_serve_writes_or_answers(server: WatchingServer) -> None:
    server.script("caller/model", Reply(f"Incorrect API key provided: {CANARY}", status=401))
    with serve_process(server) as (base, _, output):
        response = post(
            base, {"model": "caller/model", "messages": [{"role": "user", "content": "hi"}]}
        )
        crashed = post(base, {"model": "caller/model", "messages": "not a list"})
    assert response.status_code == 502 and crashed.status_code == 400
    assert CANARY not in response.text + crashed.text + "".join(output)
    assert server.requests[0].headers["authorization"] == f"Bearer {CANARY}"
