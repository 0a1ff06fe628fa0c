"""The model alias as an agent's model: tools bound to the synthesis, one deliberation a question.

Over the loopback wire: ``langchain.agents.create_agent`` drives the alias with
a real tool; the panel and the judge are asked once per question however many
tool turns follow, and never see the caller's tools.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from langchain.agents import create_agent
from langchain_core.messages import AIMessage, HumanMessage, ToolMessage
from langchain_core.tools import tool
from langgraph.checkpoint.memory import InMemorySaver

from langfusion.graph import FusionContext, ModelRegistry, build_fusion_graph
from langfusion.tools import FusionChatModel
from langfusion.tools.alias.run import Analyses
from tests.fakes import result_of, verdict
from tests.openai_server import OpenAIServer, Reply
from tests.test_alias_paths import Runs

QUESTION = "Is it warm enough in 'Lisbon' for a picnic on Saturday?"
ANSWER = "Yes: 24 degrees and dry, so a picnic in Lisbon works."
PANEL = ("p/one", "p/two")
DELIBERATION = (*PANEL, "judge/model")


@tool
def get_weather(city: str) -> str:
    """The weather forecast for a city."""
    return f"{city}: 24 degrees, dry"


@tool
def get_sunset(city: str) -> str:
    """When the sun sets in a city."""
    return f"{city}: sunset at 20:41"


@pytest.fixture
def server(monkeypatch: pytest.MonkeyPatch) -> Iterator[OpenAIServer]:
    monkeypatch.setenv("OPENROUTER_API_KEY", "sk-or-test-0123456789")
    with OpenAIServer() as running:
        running.script("p/one", "Check the forecast first.")
        running.script("p/two", "Late spring in Lisbon is usually mild.")
        running.script("judge/model", verdict())
        running.script("synth/model", Reply(ANSWER, obey=True))
        yield running


def alias(server: OpenAIServer) -> FusionChatModel:
    return FusionChatModel(
        analysis_models=list(PANEL),
        model="judge/model",
        synthesis_model="synth/model",
        web_tools=False,
        model_factory=ModelRegistry(base_url=server.base_url),
    )


def asked(server: OpenAIServer, models: tuple[str, ...] = DELIBERATION) -> dict[str, int]:
    return {m: len(server.requests_for(m)) for m in models}


def offered(request_body: dict[str, Any]) -> list[str]:
    return [t["function"]["name"] for t in request_body.get("tools") or []]


async def test_an_agent_with_the_alias_deliberates_once_however_many_tool_turns_follow(
    server: OpenAIServer,
) -> None:
    # Two tool turns, then the answer: the synthesis calls one tool, then the other.
    server.script(
        "synth/model",
        Reply(tool_call=("get_weather", {"city": "Lisbon"})),
        Reply(tool_call=("get_sunset", {"city": "Lisbon"})),
        Reply(ANSWER),
    )
    agent = create_agent(alias(server), tools=[get_weather, get_sunset])
    out = await agent.ainvoke({"messages": [HumanMessage(QUESTION)]})

    assert out["messages"][-1].content == ANSWER
    tool_results = [m.content for m in out["messages"] if isinstance(m, ToolMessage)]
    assert tool_results == ["Lisbon: 24 degrees, dry", "Lisbon: sunset at 20:41"]
    assert asked(server) == {"p/one": 1, "p/two": 1, "judge/model": 1}
    synthesis = [r.body for r in server.requests_for("synth/model")]
    assert len(synthesis) == 3
    for body in synthesis:
        assert offered(body) == ["get_weather", "get_sunset"]
    # Each later step sees the tool results that came back since the question.
    last = synthesis[-1]["messages"]
    assert [m["content"] for m in last if m["role"] == "tool"] == tool_results
    assert "<question>" in [m for m in last if m["role"] == "user"][-1]["content"]
    # The panel and the judge never see the caller's tools.
    for model in DELIBERATION:
        for request in server.requests_for(model):
            assert not {"get_weather", "get_sunset"} & set(offered(request.body))
    # Only the synthesis ran on the later steps, and only its tokens count there.
    steps = [m for m in out["messages"] if isinstance(m, AIMessage)]
    assert [m.usage_metadata["total_tokens"] for m in steps] == [72, 18, 18]  # type: ignore[index]
    reused = steps[1].response_metadata["fusion"]
    assert reused["analysis"] == steps[0].response_metadata["fusion"]["analysis"]
    assert reused["usage"]["panel"]["total_tokens"] == 0


def test_the_sync_agent_and_its_streams_deliberate_once_too(server: OpenAIServer) -> None:
    agent = create_agent(alias(server), tools=[get_weather])
    out = agent.invoke({"messages": [HumanMessage(QUESTION)]})
    assert out["messages"][-1].content == ANSWER
    assert asked(server) == {"p/one": 1, "p/two": 1, "judge/model": 1}

    # Streamed as LangGraph streams an agent: the alias's tokens come through. A
    # "messages" stream makes LangChain call the alias's _stream without a run
    # manager, so its pipeline runs under the agent's model node, beside the
    # alias's own run, with its progress events.
    runs = Runs()
    tokens = [
        chunk.content
        for chunk, metadata in agent.stream(
            {"messages": [HumanMessage("And on Sunday, in 'Porto'?")]},
            {"callbacks": [runs]},
            stream_mode="messages",
        )
        if metadata.get("langgraph_node") == "model"
    ]
    assert "".join(str(t) for t in tokens).endswith(ANSWER)
    assert asked(server) == {"p/one": 2, "p/two": 2, "judge/model": 2}
    first, second = runs.aliases()
    assert runs.under(first) == runs.under(second) == set()
    node = runs.parent[first]
    assert node is not None and runs.name[node] == "model"
    assert {"fusion", *DELIBERATION, "synth/model"} <= runs.under(node)
    assert "panel_started" in runs.progress(node)
    assert runs.progress(runs.parent[second]) == [  # type: ignore[arg-type]
        "analysis_reused",
        "synthesis_started",
    ]


async def test_a_tool_result_for_a_question_this_alias_never_saw_runs_the_whole_pipeline(
    server: OpenAIServer,
) -> None:
    conversation = [
        HumanMessage(QUESTION),
        AIMessage("", tool_calls=[{"name": "get_weather", "args": {"city": "Lisbon"}, "id": "c1"}]),
        ToolMessage("Lisbon: 24 degrees, dry", tool_call_id="c1"),
    ]
    reply = await alias(server).bind_tools([get_weather]).ainvoke(conversation)
    assert reply.content == ANSWER
    assert asked(server) == {"p/one": 1, "p/two": 1, "judge/model": 1}
    # The panel deliberates on the conversation up to its question, not on tool traffic.
    panel = server.requests_for("p/one")[0].body["messages"]
    assert [m["role"] for m in panel][-1] == "user" and all(m["role"] != "tool" for m in panel)


async def test_analyses_are_kept_per_conversation_and_bounded(server: OpenAIServer) -> None:
    llm = alias(server)
    bound = llm.bind_tools([get_weather])
    other = "Is it warm enough in 'Madrid' for a picnic on Saturday?"
    firsts = {q: await bound.ainvoke([HumanMessage(q)]) for q in (QUESTION, other)}
    assert asked(server) == {"p/one": 2, "p/two": 2, "judge/model": 2}
    for question, first in firsts.items():
        call = first.tool_calls[0]
        follow_up = [
            HumanMessage(question),
            first,
            ToolMessage(get_weather.invoke(call["args"]), tool_call_id=call["id"]),
        ]
        reply = await bound.ainvoke(follow_up)
        assert reply.content == ANSWER
        # Its own conversation's analysis, not the other's.
        assert (
            reply.response_metadata["fusion"]["analysis"]
            == (first.response_metadata["fusion"]["analysis"])
        )
    assert asked(server) == {"p/one": 2, "p/two": 2, "judge/model": 2}

    kept = Analyses(limit=2)
    results = [first.response_metadata["fusion"] for first in firsts.values()]
    from langfusion.graph import FusionResult

    for index in range(3):
        kept.keep(f"conversation {index}", FusionResult.model_validate(results[0]))
    assert len(kept) == 2 and kept.get("conversation 0") is None
    assert kept.get("conversation 2") is not None


async def test_the_graph_reuses_an_earlier_result_and_binds_a_callers_tools_to_the_synthesis(
    server: OpenAIServer,
) -> None:
    graph = build_fusion_graph(model_factory=ModelRegistry(base_url=server.base_url))
    context = FusionContext(
        analysis_models=list(PANEL), model="judge/model", synthesis_model="synth/model"
    )
    first = await graph.ainvoke({"messages": [HumanMessage(QUESTION)]}, context=context)
    assert asked(server) == {"p/one": 1, "p/two": 1, "judge/model": 1}
    weather = {"type": "function", "function": {"name": "get_weather", "parameters": {}}}
    follow_up = {
        "messages": [
            HumanMessage(QUESTION),
            AIMessage("", tool_calls=[{"name": "get_weather", "args": {}, "id": "c1"}]),
            ToolMessage("Lisbon: 24 degrees, dry", tool_call_id="c1"),
        ],
        # As a LangGraph server receives it: the earlier result as JSON.
        "reuse": json.loads(result_of(first).to_json()),
        "synthesis_options": {"tools": [weather], "tool_choice": "auto"},
    }
    events = [
        payload["event"]
        async for payload in graph.astream(follow_up, context=context, stream_mode="custom")
    ]
    assert events == ["analysis_reused", "synthesis_started"]
    assert asked(server) == {"p/one": 1, "p/two": 1, "judge/model": 1}
    body = server.requests_for("synth/model")[-1].body
    assert offered(body) == ["get_weather"] and body["tool_choice"] == "auto"
    assert body["messages"][-1] == {
        "role": "tool",
        "content": "Lisbon: 24 degrees, dry",
        "tool_call_id": "c1",
    }


async def test_reuse_and_synthesis_options_apply_to_one_run_of_a_thread(
    server: OpenAIServer,
) -> None:
    graph = build_fusion_graph(
        model_factory=ModelRegistry(base_url=server.base_url), checkpointer=InMemorySaver()
    )
    context = FusionContext(
        analysis_models=list(PANEL),
        model="judge/model",
        synthesis_model="synth/model",
        web_tools=False,
    )
    config = {"configurable": {"thread_id": "picnic"}}
    first = await graph.ainvoke({"messages": [HumanMessage(QUESTION)]}, config, context=context)
    weather = {"type": "function", "function": {"name": "get_weather", "parameters": {}}}
    await graph.ainvoke(
        {
            "messages": [HumanMessage("And Sunday?")],
            "reuse": first["result"],
            "synthesis_options": {"tools": [weather]},
        },
        config,
        context=context,
    )
    assert asked(server) == {"p/one": 1, "p/two": 1, "judge/model": 1}
    # The next run on the thread passes neither: it deliberates, with no tools bound.
    await graph.ainvoke({"messages": [HumanMessage("And Monday?")]}, config, context=context)
    assert asked(server) == {"p/one": 2, "p/two": 2, "judge/model": 2}
    assert "tools" not in server.requests_for("synth/model")[-1].body


async def test_an_error_result_cannot_be_reused(server: OpenAIServer) -> None:
    from langfusion.graph import FusionResult

    graph = build_fusion_graph(model_factory=ModelRegistry(base_url=server.base_url))
    context = FusionContext(analysis_models=list(PANEL), model="judge/model")
    out = await graph.ainvoke(
        {
            "messages": [HumanMessage(QUESTION)],
            "reuse": FusionResult.failure("nothing", "all_panels_failed"),
        },
        context=context,
    )
    assert result_of(out).failure_reason == "invalid_request"
    assert "reuse" in (result_of(out).error or "")
    assert server.requests == []
