"""The bounded tool-calling loop of panel calls, over HTTP with fake web tools."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any
from uuid import UUID

import httpx
import openai
import pytest
from langchain_core.callbacks import BaseCallbackHandler
from langchain_core.messages import HumanMessage
from langchain_core.runnables import RunnableConfig
from langchain_core.tools import BaseTool, tool
from langchain_openai import ChatOpenAI

from langfusion.graph import FusionContext, ModelRegistry, build_fusion_graph
from langfusion.graph.models import ModelTraits
from langfusion.graph.toolloop import BUDGET_SPENT, answer_with_tools
from tests.fakes import ScriptedModel, result_of, verdict
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


async def fuse(
    server: OpenAIServer,
    tools: list[BaseTool],
    config: RunnableConfig | None = None,
    **kw: Any,
) -> dict[str, Any]:
    graph = build_fusion_graph(
        model_factory=ModelRegistry(base_url=server.base_url), web_tools=tools
    )
    context = FusionContext(
        analysis_models=["p/1"], model="judge/model", synthesis_model="synth/model", **kw
    )
    return await graph.ainvoke({"messages": [HumanMessage(QUESTION)]}, config, context=context)


def tool_results(body: dict[str, Any]) -> list[str]:
    return [m["content"] for m in body["messages"] if m["role"] == "tool"]


def answered_ids(body: dict[str, Any]) -> list[str]:
    return [m["tool_call_id"] for m in body["messages"] if m["role"] == "tool"]


def turn(*calls: tuple[str, dict[str, Any]]) -> Reply:
    """A reply asking for several tool calls at once, as models do."""
    tool_calls = [
        {
            "id": f"call_{index}",
            "type": "function",
            "function": {"name": name, "arguments": json.dumps(arguments)},
        }
        for index, (name, arguments) in enumerate(calls)
    ]
    message = {"role": "assistant", "content": None, "tool_calls": tool_calls}
    return Reply(
        fault="raw",
        body={
            "id": "chatcmpl-turn",
            "object": "chat.completion",
            "created": 0,
            "model": "p/1",
            "system_fingerprint": "fp_loopback",
            "choices": [{"index": 0, "message": message, "finish_reason": "tool_calls"}],
            "usage": {"prompt_tokens": 11, "completion_tokens": 7, "total_tokens": 18},
        },
    )


async def test_panel_model_searches_fetches_then_answers(server: OpenAIServer) -> None:
    tools, log = fake_web()
    server.script(
        "p/1",
        Reply(tool_call=("web_search", {"query": "IPCC methane"})),
        Reply(tool_call=("web_fetch", {"url": "https://example.org/ar6"})),
        Reply("Methane cuts are the fastest lever, per AR6."),
    )
    out = await fuse(server, tools)
    response = result_of(out).responses[0]
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
    assert result_of(out).responses[0].content == "answer after two searches"
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
    assert result_of(out).responses[0].content == "answered without the page"
    results = tool_results(server.requests_for("p/1")[1].body)
    assert results == ["Error from web_fetch: connection refused by the page"]


async def test_one_turns_calls_run_together_and_answer_in_the_order_asked(
    server: OpenAIServer,
) -> None:
    started: list[str] = []
    all_started = asyncio.Event()
    second_done = asyncio.Event()

    @tool
    async def web_search(query: str) -> str:
        """Search the web."""
        started.append(query)
        if len(started) == 2:
            all_started.set()
        # Run one after the other, the first search would wait here until the guard ran out.
        await asyncio.wait_for(all_started.wait(), 10)
        if query == "first":
            await asyncio.wait_for(second_done.wait(), 10)  # finish after the second one
        else:
            second_done.set()
        return f"results for {query}"

    @tool
    async def web_fetch(url: str) -> str:
        """Fetch a page."""
        raise RuntimeError("page gone")

    server.script(
        "p/1",
        turn(
            ("web_search", {"query": "first"}),
            ("web_fetch", {"url": "https://gone.example/"}),
            ("web_search", {"query": "second"}),
        ),
        Reply("answer from both searches"),
    )
    out = await fuse(server, [web_search, web_fetch])
    response = result_of(out).responses[0]
    assert response.content == "answer from both searches"
    assert response.tool_calls == 3
    body = server.requests_for("p/1")[1].body
    assert answered_ids(body) == ["call_0", "call_1", "call_2"]
    assert tool_results(body) == [
        "results for first",
        "Error from web_fetch: page gone",
        "results for second",
    ]


async def test_calls_past_the_budget_in_one_turn_are_told_it_is_spent(
    server: OpenAIServer,
) -> None:
    tools, log = fake_web()
    server.script(
        "p/1",
        turn(*(("web_search", {"query": q}) for q in ("one", "two", "three"))),
        Reply("answer after two searches"),
    )
    out = await fuse(server, tools, max_tool_calls=2)
    assert result_of(out).responses[0].tool_calls == 2
    assert sorted(args["query"] for _, args in log) == ["one", "two"]
    second = server.requests_for("p/1")[1].body
    assert answered_ids(second) == ["call_0", "call_1", "call_2"]
    assert [r == BUDGET_SPENT for r in tool_results(second)] == [False, False, True]
    assert second["tool_choice"] == "none"


class RunRecorder(BaseCallbackHandler):
    """Every run's kind, name, parent and metadata, as a tracer records them."""

    run_inline = True

    def __init__(self) -> None:
        self.runs: dict[UUID, TracedRun] = {}

    def _record(
        self, kind: str, serialized: Any, run_id: UUID, parent: UUID | None, **kw: Any
    ) -> None:
        name = kw.get("name") or (serialized or {}).get("name") or ""
        self.runs[run_id] = TracedRun(kind, name, parent, dict(kw.get("metadata") or {}))

    def on_chain_start(self, serialized: Any, inputs: Any, **kw: Any) -> None:
        self._record("chain", serialized, kw.pop("run_id"), kw.pop("parent_run_id", None), **kw)

    def on_chat_model_start(self, serialized: Any, messages: Any, **kw: Any) -> None:
        self._record("llm", serialized, kw.pop("run_id"), kw.pop("parent_run_id", None), **kw)

    def on_tool_start(self, serialized: Any, input_str: str, **kw: Any) -> None:
        self._record("tool", serialized, kw.pop("run_id"), kw.pop("parent_run_id", None), **kw)


@dataclass
class TracedRun:
    kind: str
    name: str
    parent: UUID | None
    metadata: dict[str, Any]


async def test_tool_runs_sit_beside_their_panel_calls_in_the_trace(server: OpenAIServer) -> None:
    tools, _ = fake_web()
    server.script(
        "p/1",
        Reply(tool_call=("web_search", {"query": "IPCC methane"})),
        Reply(tool_call=("web_fetch", {"url": "https://example.org/ar6"})),
        Reply("Methane cuts are the fastest lever."),
    )
    recorder = RunRecorder()
    await fuse(server, tools, {"callbacks": [recorder]})
    runs = recorder.runs
    tool_runs = [run for run in runs.values() if run.kind == "tool"]
    assert [run.name for run in tool_runs] == ["web_search", "web_fetch"]
    (branch,) = {run.parent for run in runs.values() if run.kind == "llm" and run.name == "p/1"}
    assert branch is not None and runs[branch].name == "analyze"
    for run in tool_runs:
        assert run.parent == branch
        assert run.metadata["fusion_role"] == "panel"
        assert run.metadata["fusion_model"] == "p/1"


async def test_a_model_whose_traits_take_no_tools_is_not_offered_them(
    server: OpenAIServer,
) -> None:
    tools, log = fake_web()
    server.script("p/1", "plain answer")
    model = ChatOpenAI(
        model="p/1",
        base_url=server.base_url,
        api_key="sk-test-0123456789",  # type: ignore[arg-type]
        max_retries=0,
        timeout=10,
        metadata=ModelTraits(takes_tools=False).as_metadata(),
    )
    outcome = await answer_with_tools(model, [HumanMessage(QUESTION)], tools, max_tool_calls=4)
    assert outcome.message.text == "plain answer"
    assert "tools" not in server.requests_for("p/1")[0].body
    assert log == []


def bad_request(**error: Any) -> openai.BadRequestError:
    """A 400 as the openai client raises it, with the error object an endpoint sent."""
    request = httpx.Request("POST", "http://127.0.0.1:9/v1/chat/completions")
    response = httpx.Response(400, request=request, json={"error": error})
    return openai.BadRequestError(
        f"Error code: 400 - {error['message']}", response=response, body=error
    )


TOOLS_REFUSED = [
    # OpenAI's shape for a model without tool calling.
    {"message": "tools is not supported in this model.", "param": "tools", "code": None},
    {"message": "Unsupported value.", "param": "tool_choice", "code": "unsupported_value"},
    {"message": "Invalid schema.", "param": "tools[0].function.parameters", "code": None},
    {"message": "Not available for this model.", "param": None, "code": "tools"},
]


@pytest.mark.parametrize("error", TOOLS_REFUSED)
@pytest.mark.parametrize("offered", ["client tools", "server tools"])
async def test_an_endpoint_that_refuses_tools_gets_the_question_without_them(
    error: dict[str, Any], offered: str
) -> None:
    tools, log = fake_web()
    model = ScriptedModel(replies=[bad_request(**error), "plain answer"])
    outcome = await answer_with_tools(
        model,
        [HumanMessage(QUESTION)],
        tools,
        max_tool_calls=4,
        server_tools=[{"type": "openrouter:web_search"}] if offered == "server tools" else (),
    )
    assert outcome.message.text == "plain answer"
    assert outcome.tool_calls == 0
    assert log == []


@pytest.mark.parametrize(
    "error",
    [
        # The text says "tool" and "function"; the structured error names no tool field.
        {"message": "tools are not supported: no function calling here", "param": None},
        {"message": "The function result is too long.", "param": "messages[2].content"},
    ],
)
async def test_a_bad_request_that_names_no_tool_field_is_an_error(error: dict[str, Any]) -> None:
    tools, _ = fake_web()
    model = ScriptedModel(replies=[bad_request(code=None, **error), "plain answer"])
    with pytest.raises(openai.BadRequestError):
        await answer_with_tools(model, [HumanMessage(QUESTION)], tools, max_tool_calls=4)


async def test_tool_words_in_a_400_message_do_not_drop_the_tools(server: OpenAIServer) -> None:
    tools, _ = fake_web()
    server.script(
        "p/1", Reply("tools are not supported for this model", status=400), Reply("plain answer")
    )
    result = result_of(await fuse(server, tools))
    assert result.responses == []
    assert [(f.model, f.failure_reason) for f in result.failed_models] == [
        ("p/1", "invalid_request")
    ]
    (request,) = server.requests_for("p/1")
    assert "tools" in request.body


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
    assert result_of(out).analysis is not None
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
    response = result_of(out).responses[0]
    assert response.tool_calls == 2
    requests = server.requests_for("p/1")
    search_result, fetched = tool_results(requests[2].body)
    assert article in search_result
    assert "untrusted" in fetched and "fastest lever" in fetched and "pay for themselves" in fetched
    assert "Buy cheap flights" not in fetched and "ad-network-tracking-code" not in fetched
    assert "Methane and the 1.5 C goal" in fetched
