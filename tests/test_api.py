"""The OpenRouter-compatible API's Chat Completions, on the wire, over the scripted upstream."""

from __future__ import annotations

import json
from typing import Any

import pytest

from langfusion.tools import FUSION_DESCRIPTION
from tests.api_harness import (
    CANARY,
    PANEL,
    ApiServer,
    WatchingServer,
    ask,
    calls_fusion,
    fusion_tool,
    panel_calls,
    sse_data,
)
from tests.api_harness import running_api as running_api  # the fixture api
from tests.api_harness import scripted_upstream as scripted_upstream  # the fixture server
from tests.fakes import verdict
from tests.openai_server import Reply


def record_of(message: dict[str, Any]) -> dict[str, Any]:
    (detail,) = message["reasoning_details"]
    assert detail["type"] == "reasoning.server_tool_call"
    assert detail["tool_name"] == "openrouter:fusion"
    return detail


# Who may call it, and what a bad request gets.


@pytest.mark.parametrize("base", ["/api/v1", "/v1"])
def test_a_request_without_the_token_or_with_a_wrong_one_is_401(api: ApiServer, base: str) -> None:
    for token in (None, "lf-wrong"):
        with api.client(token, base) as client:
            response = client.post("/chat/completions", json={"model": "m", "messages": ask()})
        assert response.status_code == 401
        assert response.json()["error"]["code"] == 401


def test_the_same_api_answers_under_v1_for_openai_style_base_urls(
    api: ApiServer, server: WatchingServer
) -> None:
    server.script("caller/model", "Plain answer.")
    with api.client(base="/v1") as client:
        response = client.post(
            "/chat/completions", json={"model": "caller/model", "messages": ask()}
        )
    assert response.status_code == 200
    assert response.json()["choices"][0]["message"]["content"] == "Plain answer."


def test_an_unknown_field_is_a_400_that_names_it(api: ApiServer, server: WatchingServer) -> None:
    with api.client() as client:
        top = client.post("/chat/completions", json={"model": "m", "messages": ask(), "colour": 1})
        inner = client.post(
            "/chat/completions",
            json={"model": "m", "messages": ask(), "tools": [fusion_tool(panel_size=3)]},
        )
    assert top.status_code == 400 and "'colour'" in top.json()["error"]["message"]
    assert inner.status_code == 400
    assert "'panel_size'" in inner.json()["error"]["message"]
    assert "tools[0].parameters" in inner.json()["error"]["message"]
    assert server.requests == []


def test_an_invalid_fusion_parameter_is_a_400_before_any_model_is_called(
    api: ApiServer, server: WatchingServer
) -> None:
    with api.client() as client:
        response = client.post(
            "/chat/completions",
            json={"model": "m", "messages": ask(), "tools": [fusion_tool(max_tool_calls=99)]},
        )
    assert response.status_code == 400
    assert "max_tool_calls" in response.json()["error"]["message"]
    assert server.requests == []


def test_a_body_that_is_not_json_is_a_400(api: ApiServer) -> None:
    with api.client() as client:
        response = client.post("/chat/completions", content=b"{not json")
    assert response.status_code == 400
    assert response.json()["error"]["message"] == "the body is not JSON"


def test_an_unknown_model_is_a_404(api: ApiServer, server: WatchingServer) -> None:
    server.script("nobody/model", Reply("No endpoints found for nobody/model.", status=404))
    with api.client() as client:
        response = client.post(
            "/chat/completions", json={"model": "nobody/model", "messages": ask()}
        )
    assert response.status_code == 404
    assert response.json()["error"]["code"] == 404
    assert "nobody/model" in response.json()["error"]["message"]


def test_a_foreign_host_is_refused_by_the_playgrounds_guard(api: ApiServer) -> None:
    with api.client() as client:
        response = client.post(
            "/chat/completions",
            json={"model": "m", "messages": ask()},
            headers={"host": "attacker.example"},
        )
    assert response.status_code == 403


# Plain completions.


def test_a_plain_completion_is_answered_by_its_model_with_usage(
    api: ApiServer, server: WatchingServer
) -> None:
    server.script("caller/model", Reply("Plain answer.", cost=0.002))
    with api.client() as client:
        body = client.post("/chat/completions", json={"model": "caller/model", "messages": ask()})
    completion = body.json()
    message = completion["choices"][0]["message"]
    assert completion["object"] == "chat.completion"
    assert completion["model"] == "caller/model"
    assert isinstance(completion["system_fingerprint"], str)
    assert message["content"] == "Plain answer." and "reasoning_details" not in message
    assert completion["usage"]["prompt_tokens"] == 11
    assert completion["usage"]["completion_tokens"] == 7
    assert completion["usage"]["cost"] == pytest.approx(0.002)
    assert panel_calls(server) == 0


def test_a_streamed_plain_completion_ends_with_usage_then_done(
    api: ApiServer, server: WatchingServer
) -> None:
    server.script("caller/model", "one two three four")
    with api.client() as client:
        with client.stream(
            "POST",
            "/chat/completions",
            json={"model": "caller/model", "messages": ask(), "stream": True},
        ) as response:
            assert response.headers["content-type"].startswith("text/event-stream")
            events = list(sse_data(response.iter_lines()))
    assert events[-1] == "[DONE]"
    chunks = events[:-1]
    text = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"])
    assert text == "one two three four"
    assert all(c["object"] == "chat.completion.chunk" for c in chunks)
    assert chunks[-1]["usage"]["total_tokens"] == 18
    assert not any(c.get("usage") for c in chunks[:-1])


# The server tool.


def test_the_server_tool_runs_when_the_model_calls_it_and_leaves_no_tool_call(
    api: ApiServer, server: WatchingServer
) -> None:
    # The request's model is also the judge: it calls the tool, judges, then answers.
    server.script(
        "caller/model",
        calls_fusion(),
        verdict(),
        Reply("The answer, from the analysis.", cost=0.01),
    )
    cited = {"type": "url_citation", "url_citation": {"url": "https://example.org/a", "title": "A"}}
    server.script("p/one", Reply("First view.", cost=0.001, annotations=[cited]))
    with api.client() as client:
        response = client.post(
            "/chat/completions",
            json={"model": "caller/model", "messages": ask(), "tools": [fusion_tool()]},
        )
    completion = response.json()
    message = completion["choices"][0]["message"]
    assert message["content"] == "The answer, from the analysis."
    assert "tool_calls" not in message
    assert completion["choices"][0]["finish_reason"] == "stop"
    (annotation,) = message["annotations"]
    assert annotation["type"] == "url_citation"
    assert annotation["url_citation"]["url"] == "https://example.org/a"
    record = record_of(message)
    assert json.loads(record["arguments"])["prompt"].startswith("Should we adopt")
    result = json.loads(record["result"])
    assert result["status"] == "ok"
    assert {r["model"] for r in result["responses"]} == set(PANEL)
    assert result["analysis"]["contradictions"][0]["stances"][0]["model"] in PANEL
    # The judge defaults to the request's own model.
    assert result["judge_model"] == "caller/model"
    usage = completion["usage"]
    calls = len(server.requests)  # two outer calls, two panelists, the judge
    assert calls == 5
    assert usage["prompt_tokens"] == 11 * calls
    assert usage["cost"] == pytest.approx(0.011)
    assert usage["server_tool_use_details"] == {"tool_calls_requested": 1, "tool_calls_executed": 1}
    # The calling model read the result as the tool result.
    tool_message = server.requests_for("caller/model")[-1].body["messages"][-1]
    assert tool_message["role"] == "tool" and json.loads(tool_message["content"]) == result


def test_the_model_decides_and_tool_choice_required_forces_the_call(
    api: ApiServer, server: WatchingServer
) -> None:
    server.script("caller/model", "Short answer, no deliberation needed.")
    with api.client() as client:
        decided = client.post(
            "/chat/completions",
            json={"model": "caller/model", "messages": ask("hi"), "tools": [fusion_tool()]},
        )
    offered = server.requests_for("caller/model")[0].body
    assert [t["function"]["name"] for t in offered["tools"]] == ["fusion"]
    assert offered["tools"][0]["function"]["description"] == FUSION_DESCRIPTION
    assert "reasoning_details" not in decided.json()["choices"][0]["message"]
    assert panel_calls(server) == 0

    server.script("caller/model", Reply(obey=True, content="Forced answer."))
    with api.client() as client:
        forced = client.post(
            "/chat/completions",
            json={
                "model": "caller/model",
                "messages": ask(),
                "tools": [fusion_tool(model="judge/model")],
                "tool_choice": "required",
            },
        )
    first = server.requests_for("caller/model")[1].body
    assert first["tool_choice"] == {"type": "function", "function": {"name": "fusion"}}
    assert record_of(forced.json()["choices"][0]["message"])
    assert panel_calls(server) == len(PANEL)


def test_one_fusion_per_request_a_second_call_is_capped(
    api: ApiServer, server: WatchingServer
) -> None:
    server.script("caller/model", calls_fusion(), calls_fusion("again?"), "Answer.")
    with api.client() as client:
        completion = client.post(
            "/chat/completions",
            json={
                "model": "caller/model",
                "messages": ask(),
                "tools": [fusion_tool(model="judge/model")],
            },
        ).json()
    details = completion["choices"][0]["message"]["reasoning_details"]
    assert json.loads(details[0]["result"])["status"] == "ok"
    assert json.loads(details[1]["result"])["failure_reason"] == "fusion_invocation_capped"
    assert panel_calls(server) == len(PANEL)
    assert completion["usage"]["server_tool_use_details"] == {
        "tool_calls_requested": 2,
        "tool_calls_executed": 1,
    }


WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Weather in a city.",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
    },
}


def test_the_clients_own_tools_reach_the_model_and_come_back_as_tool_calls(
    api: ApiServer, server: WatchingServer
) -> None:
    server.script("caller/model", Reply(tool_call=("get_weather", {"city": "Oslo"})))
    with api.client() as client:
        completion = client.post(
            "/chat/completions",
            json={"model": "caller/model", "messages": ask(), "tools": [fusion_tool(), WEATHER]},
        ).json()
    offered = server.requests_for("caller/model")[0].body["tools"]
    assert [t["function"]["name"] for t in offered] == ["fusion", "get_weather"]
    choice = completion["choices"][0]
    assert choice["finish_reason"] == "tool_calls"
    (call,) = choice["message"]["tool_calls"]
    assert call["function"]["name"] == "get_weather"
    assert json.loads(call["function"]["arguments"]) == {"city": "Oslo"}
    assert panel_calls(server) == 0


def test_the_next_turn_reuses_the_recorded_analysis_without_a_new_panel_call(
    api: ApiServer, server: WatchingServer
) -> None:
    server.script(
        "caller/model",
        calls_fusion(),
        Reply(tool_call=("get_weather", {"city": "Oslo"})),
        calls_fusion("once more?"),
        "Final answer with the weather.",
    )
    request = {
        "model": "caller/model",
        "messages": ask(),
        "tools": [fusion_tool(model="judge/model"), WEATHER],
    }
    with api.client() as client:
        first = client.post("/chat/completions", json=request).json()
        assert panel_calls(server) == len(PANEL)
        message = first["choices"][0]["message"]
        (call,) = message["tool_calls"]
        recorded = record_of(message)
        conversation = [
            *request["messages"],
            message,
            {"role": "tool", "tool_call_id": call["id"], "content": "Sunny, 21 C."},
        ]
        second = client.post("/chat/completions", json={**request, "messages": conversation})
    answer = second.json()["choices"][0]["message"]
    assert answer["content"] == "Final answer with the weather."
    assert panel_calls(server) == len(PANEL)
    # The recorded fusion is back in place for the calling model, and its call got the record.
    replayed = server.requests_for("caller/model")[2].body["messages"]
    assert [m["role"] for m in replayed] == ["user", "assistant", "tool", "assistant", "tool"]
    assert replayed[2]["content"] == recorded["result"]
    assert record_of(answer)["result"] == recorded["result"]
    assert second.json()["usage"]["server_tool_use_details"]["tool_calls_executed"] == 0


def test_the_plugin_attaches_the_tool_and_enabled_false_leaves_it_off(
    api: ApiServer, server: WatchingServer
) -> None:
    server.script("caller/model", "No need.")
    with api.client() as client:
        client.post(
            "/chat/completions",
            json={"model": "caller/model", "messages": ask(), "plugins": [{"id": "fusion"}]},
        )
        client.post(
            "/chat/completions",
            json={
                "model": "caller/model",
                "messages": ask(),
                "plugins": [{"id": "fusion", "enabled": False}],
            },
        )
    attached, off = server.requests_for("caller/model")
    assert [t["function"]["name"] for t in attached.body["tools"]] == ["fusion"]
    assert "tool_choice" not in attached.body
    assert "tools" not in off.body


# The alias.


def test_the_alias_runs_the_whole_pipeline_and_answers_with_the_synthesis(
    api: ApiServer, server: WatchingServer
) -> None:
    with api.client() as client:
        completion = client.post(
            "/chat/completions", json={"model": "openrouter/fusion", "messages": ask()}
        ).json()
    message = completion["choices"][0]["message"]
    assert message["content"] == "The synthesis: recycle the revenue as dividends."
    assert completion["model"] == "synth/model"
    assert json.loads(record_of(message)["result"])["analysis"]["consensus"]
    assert panel_calls(server) == len(PANEL)
    assert len(server.requests_for("judge/model")) == 1
    assert completion["usage"]["prompt_tokens"] == 11 * len(server.requests)


def test_the_plugin_configures_the_alias_its_model_judges_and_writes(
    api: ApiServer, server: WatchingServer
) -> None:
    server.script("other/judge", verdict(), "Written by the other judge.")
    with api.client() as client:
        completion = client.post(
            "/chat/completions",
            json={
                "model": "langfusion/fusion",
                "messages": ask(),
                "plugins": [{"id": "fusion", "model": "other/judge", "synthesis_model": None}],
            },
        )
    assert completion.status_code == 200, completion.text
    assert completion.json()["model"] == "other/judge"
    assert completion.json()["choices"][0]["message"]["content"] == "Written by the other judge."
    assert server.requests_for("judge/model") == []


def test_the_streamed_alias_sends_keepalives_while_the_panel_works(
    api: ApiServer, server: WatchingServer
) -> None:
    server.script("p/one", "A slow panelist.", latency_s=0.5)
    with api.client() as client:
        with client.stream(
            "POST",
            "/chat/completions",
            json={"model": "openrouter/fusion", "messages": ask(), "stream": True},
        ) as response:
            lines = [line for line in response.iter_lines() if line]
    keepalives = [i for i, line in enumerate(lines) if line.startswith(":")]
    first_text = next(i for i, line in enumerate(lines) if '"content": "The' in line)
    assert keepalives and keepalives[0] < first_text
    events = list(sse_data(iter(lines)))
    assert events[-1] == "[DONE]"
    text = "".join(
        e["choices"][0]["delta"].get("content") or "" for e in events[:-1] if e["choices"]
    )
    assert text == "The synthesis: recycle the revenue as dividends."
    assert events[-2]["usage"]["server_tool_use_details"]["tool_calls_executed"] == 1


def test_the_alias_with_nothing_usable_answers_with_the_causes_status(
    api: ApiServer, server: WatchingServer
) -> None:
    for slug in PANEL:
        server.script(slug, Reply("slow down", status=429))
    with api.client() as client:
        response = client.post(
            "/chat/completions", json={"model": "openrouter/fusion", "messages": ask()}
        )
    assert response.status_code == 429
    error = response.json()["error"]
    assert error["metadata"]["fusion"]["failure_reason"] == "rate_limited"
    assert server.requests_for("synth/model") == []


# Recursion.


def test_a_nested_request_gets_no_fusion(api: ApiServer, server: WatchingServer) -> None:
    server.script("caller/model", calls_fusion(), "Answered without it.")
    with api.client() as client:
        alias = client.post(
            "/chat/completions",
            json={"model": "openrouter/fusion", "messages": ask()},
            headers={"x-openrouter-fusion-depth": "1"},
        )
        tool = client.post(
            "/chat/completions",
            json={"model": "caller/model", "messages": ask(), "tools": [fusion_tool()]},
            headers={"x-fusion-depth": "1"},
        )
    assert alias.status_code == 400 and "recursion" in alias.json()["error"]["message"]
    result = json.loads(record_of(tool.json()["choices"][0]["message"])["result"])
    assert result["failure_reason"] == "recursion_blocked"
    assert panel_calls(server) == 0


def test_inner_calls_carry_the_depth_header(api: ApiServer, server: WatchingServer) -> None:
    with api.client() as client:
        client.post("/chat/completions", json={"model": "openrouter/fusion", "messages": ask()})
    assert {r.headers.get("x-fusion-depth") for r in server.requests} == {"1"}


# Secrets.


def test_no_upstream_key_in_any_body_or_log(
    api: ApiServer, server: WatchingServer, caplog: pytest.LogCaptureFixture
) -> None:
    server.script("caller/model", Reply(f"Incorrect API key provided: {CANARY}", status=401))
    server.script("p/one", Reply(f"Invalid key {CANARY}", status=401))
    with api.client() as client:
        bodies = [
            client.post("/chat/completions", json={"model": "caller/model", "messages": ask()}),
            client.post(
                "/chat/completions", json={"model": "openrouter/fusion", "messages": ask()}
            ),
            client.post("/responses", json={"model": "openrouter/fusion", "input": "Why?"}),
            client.get("/models"),
        ]
    for response in bodies:
        assert CANARY not in response.text and CANARY[:20] not in response.text
    assert bodies[0].status_code == 502
    assert CANARY not in caplog.text
    # The key did reach the upstream: it is what the test proves stays there.
    assert server.requests[0].headers["authorization"] == f"Bearer {CANARY}"


def test_models_lists_the_alias_and_the_default_panel(api: ApiServer) -> None:
    with api.client() as client:
        listed = client.get("/models").json()
    ids = [m["id"] for m in listed["data"]]
    assert ids[:2] == ["langfusion/fusion", "openrouter/fusion"]
    assert set(PANEL) <= set(ids)
