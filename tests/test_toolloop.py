"""The bounded tool-calling loop of panel calls, over HTTP with fake web tools."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from langchain_core.messages import HumanMessage
from langchain_core.tools import BaseTool, tool

from langfusion.graph import FusionContext, ModelRegistry, build_fusion_graph
from tests.fakes import verdict
from tests.openai_server import OpenAIServer, Reply

QUESTION = "What did the 2024 IPCC synthesis say about methane?"


@pytest.fixture
def server(monkeypatch: pytest.MonkeyPatch) -> Iterator[OpenAIServer]:
    monkeypatch.setenv("OPENROUTER_API_KEY", "sk-or-test-0123456789")
    with OpenAIServer() as running:
        running.script("judge/model", verdict())
        running.script("synth/model", "synthesis")
        yield running


def fake_web() -> tuple[list[BaseTool], list[tuple[str, dict[str, Any]]]]:
    log: list[tuple[str, dict[str, Any]]] = []

    @tool
    def web_search(query: str) -> str:
        """Search the web."""
        log.append(("web_search", {"query": query}))
        return json.dumps(
            [{"title": "IPCC AR6", "url": "https://example.org/ar6", "snippet": "methane"}]
        )

    @tool
    def web_fetch(url: str) -> str:
        """Fetch a page."""
        log.append(("web_fetch", {"url": url}))
        if "broken" in url:
            raise RuntimeError("connection refused by the page")
        return "<untrusted_web_content>Methane cuts are the fastest lever.</untrusted_web_content>"

    return [web_search, web_fetch], log


async def fuse(server: OpenAIServer, tools: list[BaseTool], **kw: Any) -> dict[str, Any]:
    graph = build_fusion_graph(
        model_factory=ModelRegistry(base_url=server.base_url), web_tools=tools
    )
    context = FusionContext(
        analysis_models=["p/1"], model="judge/model", synthesis_model="synth/model", **kw
    )
    return await graph.ainvoke({"messages": [HumanMessage(QUESTION)]}, context=context)


def tool_results(body: dict[str, Any]) -> list[str]:
    return [m["content"] for m in body["messages"] if m["role"] == "tool"]


async def test_panel_model_searches_fetches_then_answers(server: OpenAIServer) -> None:
    tools, log = fake_web()
    server.script(
        "p/1",
        Reply(tool_call=("web_search", {"query": "IPCC methane"})),
        Reply(tool_call=("web_fetch", {"url": "https://example.org/ar6"})),
        Reply("Methane cuts are the fastest lever, per AR6."),
    )
    out = await fuse(server, tools)
    response = out["result"].responses[0]
    assert response.content == "Methane cuts are the fastest lever, per AR6."
    assert response.tool_calls == 2
    assert [name for name, _ in log] == ["web_search", "web_fetch"]
    requests = server.requests_for("p/1")
    assert [t["function"]["name"] for t in requests[0].body["tools"]] == ["web_search", "web_fetch"]
    assert "fastest lever" in tool_results(requests[2].body)[1]
    # usage adds up over the three calls of the loop
    assert response.usage is not None and response.usage.output_tokens == 21


async def test_tool_budget_caps_calls_then_forces_an_answer(server: OpenAIServer) -> None:
    tools, log = fake_web()
    server.script(
        "p/1",
        Reply(tool_call=("web_search", {"query": "one"})),
        Reply(tool_call=("web_search", {"query": "two"})),
        Reply("answer after two searches"),
    )
    out = await fuse(server, tools, max_tool_calls=2)
    assert out["result"].responses[0].content == "answer after two searches"
    assert len(log) == 2
    requests = server.requests_for("p/1")
    assert len(requests) == 3
    assert requests[0].body.get("tool_choice") in (None, "auto")
    assert requests[2].body["tool_choice"] == "none"


async def test_tool_errors_go_back_to_the_model(server: OpenAIServer) -> None:
    tools, _ = fake_web()
    server.script(
        "p/1",
        Reply(tool_call=("web_fetch", {"url": "https://broken.example/"})),
        Reply("answered without the page"),
    )
    out = await fuse(server, tools)
    assert out["result"].responses[0].content == "answered without the page"
    results = tool_results(server.requests_for("p/1")[1].body)
    assert results == ["Error from web_fetch: connection refused by the page"]


async def test_an_endpoint_without_tool_calling_still_answers(server: OpenAIServer) -> None:
    tools, log = fake_web()
    server.script(
        "p/1", Reply("tools are not supported for this model", status=400), Reply("plain answer")
    )
    out = await fuse(server, tools)
    assert out["result"].responses[0].content == "plain answer"
    first, second = server.requests_for("p/1")
    assert "tools" in first.body and "tools" not in second.body
    assert log == []


async def test_web_tools_can_be_switched_off(server: OpenAIServer) -> None:
    tools, _ = fake_web()
    server.script("p/1", "no tools needed")
    await fuse(server, tools, web_tools=False)
    assert "tools" not in server.requests_for("p/1")[0].body


async def test_judge_may_check_facts_with_the_web_tools_before_its_analysis(
    server: OpenAIServer,
) -> None:
    tools, log = fake_web()
    server.script("p/1", "Methane matters.")
    server.script(
        "judge/model",
        Reply(tool_call=("web_search", {"query": "AR6 methane"})),
        Reply("Checked: AR6 agrees (https://example.org/ar6)."),
        verdict(),
    )
    out = await fuse(server, tools, judge_web_tools=True)
    assert out["result"].analysis is not None
    assert log == [("web_search", {"query": "AR6 methane"})]
    final = server.requests_for("judge/model")[2].body
    assert final["response_format"]["type"] == "json_schema"
    assert "Checked: AR6 agrees" in final["messages"][-1]["content"]
    synth = server.requests_for("synth/model")[0].body
    assert "tools" not in synth


ARTICLE = """<!doctype html><html><head><title>Methane and the 1.5 C goal</title>
<script>var tracker = "ad-network-tracking-code";</script></head><body>
<nav><a href="/">Home</a> <a href="/about">About us</a> <a href="/shop">Shop</a></nav>
<div class="ad">Buy cheap flights now! Advertisement.</div>
<article><h1>Methane and the 1.5 C goal</h1>
<p>Cutting methane emissions is the fastest lever for slowing near-term warming,
because methane traps far more heat than carbon dioxide over twenty years.</p>
<p>Fixing leaks in oil and gas infrastructure is among the cheapest options, and
many of those measures pay for themselves through the gas they save.</p>
<p>Agriculture is the largest human source, which makes feed additives and
rice-paddy management important research areas for the coming decade.</p>
</article><footer>Copyright. Cookie settings. Newsletter sign-up.</footer></body></html>"""


async def test_real_web_tools_search_then_fetch_a_loopback_page(server: OpenAIServer) -> None:
    from langfusion.tools import web_tools

    article = f"{server.root_url}/articles/methane"
    server.pages["/articles/methane"] = ("text/html; charset=utf-8", ARTICLE)
    server.pages["/search"] = (
        "application/json",
        json.dumps(
            {
                "results": [
                    {
                        "title": "Methane and the 1.5 C goal",
                        "url": article,
                        "content": "Cutting methane is the fastest lever.",
                    }
                ]
            }
        ),
    )
    tools = web_tools(
        allow_hosts=["127.0.0.1"], search_backend="searxng", searxng_url=server.root_url
    )
    server.script(
        "p/1",
        Reply(tool_call=("web_search", {"query": "methane fastest lever"})),
        Reply(tool_call=("web_fetch", {"url": article})),
        Reply("Methane cuts are the fastest lever; leak fixes often pay for themselves."),
    )
    out = await fuse(server, tools)
    response = out["result"].responses[0]
    assert response.tool_calls == 2
    requests = server.requests_for("p/1")
    search_result, fetched = tool_results(requests[2].body)
    assert article in search_result
    assert "untrusted" in fetched and "fastest lever" in fetched and "pay for themselves" in fetched
    assert "Buy cheap flights" not in fetched and "ad-network-tracking-code" not in fetched
    assert "Methane and the 1.5 C goal" in fetched
