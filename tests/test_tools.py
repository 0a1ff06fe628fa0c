"""The fusion tool, the plugin and the model alias, as a LangChain user meets them."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any
from uuid import UUID

import pytest
from langchain.agents import create_agent
from langchain_core.callbacks import AsyncCallbackHandler
from langchain_core.messages import AIMessage, HumanMessage, ToolMessage
from langchain_openai import ChatOpenAI

from langfusion.graph import FusionResult, ModelRegistry
from langfusion.tools import FusionChatModel, FusionError, FusionTool, with_fusion
from tests.fakes import FakeFactory, ScriptedModel, verdict
from tests.openai_server import OpenAIServer, Reply

QUESTION = "Compare Raft and Paxos for a 5-node metadata store."


def factory(**panel: ScriptedModel) -> FakeFactory:
    models: dict[str, Any] = {"p/one": ScriptedModel(replies=["raft is simpler"]), **panel}
    models["judge/model"] = ScriptedModel(replies=[verdict()])
    models["synth/model"] = ScriptedModel(replies=["the synthesised answer"])
    return FakeFactory(models)


def tool(fake: FakeFactory, **kw: Any) -> FusionTool:
    params: dict[str, Any] = {"analysis_models": ["p/one"], "model": "judge/model"}
    return FusionTool(model_factory=fake, **(params | kw))


def call(args: dict[str, Any]) -> dict[str, Any]:
    return {"name": "fusion", "args": args, "id": "call-1", "type": "tool_call"}


async def test_tool_returns_spec_json_and_the_typed_artifact() -> None:
    fake = factory()
    message = await tool(fake).ainvoke(call({"prompt": QUESTION}))
    assert isinstance(message, ToolMessage)
    data = json.loads(message.content)  # type: ignore[arg-type]
    assert data["status"] == "ok"
    assert data["responses"] == [
        {
            "model": "p/one",
            "content": "raft is simpler",
            "usage": data["responses"][0]["usage"],
            "latency_s": data["responses"][0]["latency_s"],
            "tool_calls": 0,
        }
    ]
    assert isinstance(message.artifact, FusionResult)
    assert message.artifact.analysis is not None
    # The tool leaves the final answer to its caller: no synthesis call.
    assert fake.models["synth/model"].calls == []  # type: ignore[attr-defined]


def test_tool_works_synchronously() -> None:
    content = tool(factory()).invoke({"prompt": QUESTION})
    assert json.loads(content)["status"] == "ok"


async def test_tool_works_synchronously_under_a_running_loop() -> None:
    content = tool(factory()).invoke({"prompt": QUESTION})
    assert json.loads(content)["status"] == "ok"


@pytest.mark.parametrize(
    "args",
    [
        {},
        {"prompt": 42},
        {"prompt": None},
        {"prompt": ""},
        {"prompt": "   "},
        {"prompt": "x" * 4_000_001},
    ],
)
async def test_bad_tool_arguments_get_an_error_result_not_a_traceback(args: dict[str, Any]) -> None:
    fake = factory()
    message = await tool(fake).ainvoke(call(args))
    data = json.loads(message.content)
    assert data["status"] == "error" and data["failure_reason"] == "invalid_request"
    assert "prompt" in data["error"]
    assert fake.settings == []


async def test_missing_key_and_unknown_slug_are_results() -> None:
    remote = FusionTool(analysis_models=["~openai/gpt-latest"])
    data = json.loads((await remote.ainvoke(call({"prompt": QUESTION}))).content)
    assert data["failure_reason"] == "missing_api_key" and "OPENROUTER_API_KEY" in data["error"]
    unknown = tool(factory(), analysis_models=["p/one", "no/such-model"])
    data = json.loads((await unknown.ainvoke(call({"prompt": QUESTION}))).content)
    assert data["failure_reason"] == "invalid_request" and "no/such-model" in data["error"]


def test_invalid_parameters_fail_at_construction() -> None:
    with pytest.raises(ValueError, match="max_tool_calls"):
        FusionTool(max_tool_calls=40)
    with pytest.raises(ValueError, match="1 to 8"):
        FusionTool(analysis_models=[f"m/{i}" for i in range(9)])


def test_description_tells_the_calling_model_when_to_use_it() -> None:
    schema = FusionTool().tool_call_schema.model_json_schema()
    assert list(schema["properties"]) == ["prompt"]
    description = FusionTool().description
    assert "research" in description and "short tactical" in description


async def test_tool_called_from_inside_a_fusion_is_recursion_blocked() -> None:
    inner_fake = factory()
    inner = tool(inner_fake)
    seen: list[str] = []

    class CallsFusion(ScriptedModel):
        async def _agenerate(
            self, messages: Any, stop: Any = None, run_manager: Any = None, **kw: Any
        ) -> Any:
            seen.append((await inner.ainvoke(call({"prompt": "nested"}))).content)
            return await super()._agenerate(messages, stop, run_manager, **kw)

    outer = tool(factory(**{"p/one": CallsFusion()}))
    data = json.loads((await outer.ainvoke(call({"prompt": QUESTION}))).content)
    assert data["status"] == "ok"
    assert json.loads(seen[0])["failure_reason"] == "recursion_blocked"
    assert inner_fake.settings == []


class RunTree(AsyncCallbackHandler):
    def __init__(self) -> None:
        self.parent: dict[UUID, UUID | None] = {}
        self.name: dict[UUID, str] = {}

    def _record(self, run_id: UUID, parent_run_id: UUID | None, name: str) -> None:
        self.parent[run_id] = parent_run_id
        self.name[run_id] = name

    async def on_chain_start(
        self,
        serialized: Any,
        inputs: Any,
        *,
        run_id: UUID,
        parent_run_id: UUID | None = None,
        **kw: Any,
    ) -> None:
        self._record(run_id, parent_run_id, kw.get("name") or "chain")

    async def on_tool_start(
        self,
        serialized: Any,
        input_str: str,
        *,
        run_id: UUID,
        parent_run_id: UUID | None = None,
        **kw: Any,
    ) -> None:
        self._record(run_id, parent_run_id, "tool:" + (serialized or {}).get("name", ""))

    async def on_chat_model_start(
        self,
        serialized: Any,
        messages: Any,
        *,
        run_id: UUID,
        parent_run_id: UUID | None = None,
        **kw: Any,
    ) -> None:
        self._record(run_id, parent_run_id, "model:" + (kw.get("name") or ""))

    def ancestors(self, run_id: UUID) -> list[str]:
        names = []
        current = self.parent.get(run_id)
        while current is not None:
            names.append(self.name.get(current, "?"))
            current = self.parent.get(current)
        return names


async def test_tool_runs_nest_under_the_callers_callbacks() -> None:
    tree = RunTree()
    await tool(factory()).ainvoke(
        call({"prompt": QUESTION}), {"callbacks": [tree], "tags": ["outer"]}
    )
    by_name = {name: run for run, name in tree.name.items()}
    # The panel's chat-model run and the judge's structured-output run carry their slugs.
    assert "model:p/one" in by_name and "judge/model" in by_name
    for name in ("model:p/one", "judge/model"):
        assert "tool:fusion" in tree.ancestors(by_name[name])


class ToolCallingScript(ScriptedModel):
    """A scripted agent model: first a fusion tool call, then a final answer."""

    def bind_tools(self, tools: Any, **kwargs: Any) -> ToolCallingScript:  # type: ignore[override]
        return self


async def test_agent_binds_the_tool_calls_it_and_answers() -> None:
    agent_model = ToolCallingScript(
        replies=[
            AIMessage(
                content="",
                tool_calls=[{"name": "fusion", "args": {"prompt": QUESTION}, "id": "c1"}],
            ),
            AIMessage(content="Raft, because the panel agreed it is simpler."),
        ]
    )
    agent = create_agent(agent_model, tools=[tool(factory())])
    out = await agent.ainvoke({"messages": [HumanMessage(QUESTION)]})
    tool_messages = [m for m in out["messages"] if isinstance(m, ToolMessage)]
    assert json.loads(tool_messages[0].content)["status"] == "ok"  # type: ignore[arg-type]
    assert out["messages"][-1].content == "Raft, because the panel agreed it is simpler."
    second_turn = agent_model.calls[1]
    assert any(isinstance(m, ToolMessage) and '"consensus"' in str(m.content) for m in second_turn)


@pytest.fixture
def server(monkeypatch: pytest.MonkeyPatch) -> Iterator[OpenAIServer]:
    monkeypatch.setenv("OPENROUTER_API_KEY", "sk-or-test-0123456789")
    with OpenAIServer() as running:
        running.script("p/one", "panel says raft")
        running.script("p/two", "panel says paxos")
        running.script("judge/model", verdict())
        running.script("synth/model", "Raft is the better fit for five nodes.")
        yield running


async def test_agent_over_http_end_to_end(server: OpenAIServer) -> None:
    registry = ModelRegistry(base_url=server.base_url)
    server.script(
        "caller/model",
        Reply(tool_call=("fusion", {"prompt": QUESTION})),
        Reply("Final: Raft."),
    )
    caller = ChatOpenAI(
        model="caller/model", base_url=server.base_url, api_key="k", max_retries=0, timeout=10
    )  # type: ignore[arg-type]
    fusion = FusionTool(
        analysis_models=["p/one", "p/two"], model="judge/model", model_factory=registry
    )
    agent = create_agent(caller, tools=[fusion])
    out = await agent.ainvoke({"messages": [HumanMessage(QUESTION)]})
    assert out["messages"][-1].content == "Final: Raft."
    second = server.requests_for("caller/model")[1].body
    tool_turn = [m for m in second["messages"] if m["role"] == "tool"][0]
    assert json.loads(tool_turn["content"])["responses"][1]["content"] == "panel says paxos"
    assert [
        t["function"]["name"] for t in server.requests_for("caller/model")[0].body["tools"]
    ] == ["fusion"]
    # Panel and judge requests never offer the fusion tool.
    for name in ("p/one", "p/two", "judge/model"):
        for request in server.requests_for(name):
            assert "fusion" not in json.dumps(request.body.get("tools", []))


async def test_with_fusion_binds_the_tool_and_force_sets_tool_choice(server: OpenAIServer) -> None:
    registry = ModelRegistry(base_url=server.base_url)
    server.script("caller/model", verdict())
    caller = ChatOpenAI(
        model="caller/model", base_url=server.base_url, api_key="k", max_retries=0, timeout=10
    )  # type: ignore[arg-type]
    bound = with_fusion(caller, analysis_models=["p/one"], model_factory=registry, force=True)
    assert bound.kwargs["tool_choice"]["function"]["name"] == "fusion"  # type: ignore[attr-defined]
    fusion_tool = [t for t in bound.kwargs["tools"]]  # type: ignore[attr-defined]
    assert fusion_tool[0]["function"]["name"] == "fusion"
    plain = with_fusion(caller, analysis_models=["p/one"], model_factory=registry)
    assert "tool_choice" not in plain.kwargs or plain.kwargs["tool_choice"] is None  # type: ignore[attr-defined]


async def test_with_fusion_caller_is_the_judge_at_temperature_zero(server: OpenAIServer) -> None:
    from langfusion.tools.plugin import _CallerAsJudge

    registry = ModelRegistry(base_url=server.base_url)
    server.script("caller/model", verdict())
    caller = ChatOpenAI(
        model="caller/model",
        base_url=server.base_url,
        api_key="k",
        temperature=0.8,
        max_retries=0,
        timeout=10,
    )  # type: ignore[arg-type]
    fusion = FusionTool(
        analysis_models=["p/one"],
        model="caller/model",
        model_factory=_CallerAsJudge(registry, "caller/model", caller),
    )
    data = json.loads((await fusion.ainvoke(call({"prompt": QUESTION}))).content)
    assert data["status"] == "ok" and data["analysis"] is not None
    judge_request = server.requests_for("caller/model")[0].body
    assert judge_request["temperature"] == 0
    # It judges without langchain-openai's per-chunk stream timeout, whose reads a
    # cancel does not end (test_wire.py); the caller's own model keeps its settings.
    served = _CallerAsJudge(registry, "caller/model", caller)("caller/model", role="judge")
    assert served.stream_chunk_timeout is None  # type: ignore[attr-defined]
    assert caller.stream_chunk_timeout  # still on: the copy was changed, not the caller's model


async def test_alias_answers_with_the_synthesis_and_carries_the_analysis(
    server: OpenAIServer,
) -> None:
    registry = ModelRegistry(base_url=server.base_url)
    llm = FusionChatModel(
        analysis_models=["p/one", "p/two"],
        model="judge/model",
        synthesis_model="synth/model",
        model_factory=registry,
    )
    message = await llm.ainvoke(QUESTION)
    assert message.content == "Raft is the better fit for five nodes."
    fusion = message.response_metadata["fusion"]
    assert fusion["status"] == "ok" and fusion["analysis"]["consensus"]
    # 4 calls x (11 in + 7 out) on the loopback server
    assert message.usage_metadata == {"input_tokens": 44, "output_tokens": 28, "total_tokens": 72}


async def test_alias_streams_the_synthesis_token_by_token(server: OpenAIServer) -> None:
    registry = ModelRegistry(base_url=server.base_url)
    llm = FusionChatModel(
        analysis_models=["p/one"],
        model="judge/model",
        synthesis_model="synth/model",
        model_factory=registry,
    )
    chunks = [chunk async for chunk in llm.astream(QUESTION)]
    text_chunks = [c.content for c in chunks if c.content]
    assert len(text_chunks) >= 5
    assert "".join(text_chunks) == "Raft is the better fit for five nodes."  # type: ignore[arg-type]
    assert chunks[-1].response_metadata["fusion"]["status"] == "ok"
    assert server.requests_for("synth/model")[0].body["stream"] is True
    assert server.requests_for("judge/model")[0].body.get("stream") is not True


def test_alias_sync_invoke_stream_and_batch(server: OpenAIServer) -> None:
    registry = ModelRegistry(base_url=server.base_url)
    llm = FusionChatModel(
        analysis_models=["p/one"],
        model="judge/model",
        synthesis_model="synth/model",
        model_factory=registry,
    )
    assert llm.invoke(QUESTION).content == "Raft is the better fit for five nodes."
    streamed = "".join(str(c.content) for c in llm.stream(QUESTION))
    assert streamed == "Raft is the better fit for five nodes."
    answers = llm.batch([QUESTION, "Second question?"])
    assert [a.content for a in answers] == ["Raft is the better fit for five nodes."] * 2


async def test_alias_as_the_model_of_an_agent(server: OpenAIServer) -> None:
    registry = ModelRegistry(base_url=server.base_url)
    llm = FusionChatModel(
        analysis_models=["p/one"],
        model="judge/model",
        synthesis_model="synth/model",
        model_factory=registry,
    )
    agent = create_agent(llm, tools=[])
    out = await agent.ainvoke({"messages": [HumanMessage(QUESTION)]})
    assert out["messages"][-1].content == "Raft is the better fit for five nodes."


async def test_alias_raises_fusion_error_with_the_result_when_nothing_is_usable(
    server: OpenAIServer,
) -> None:
    registry = ModelRegistry(base_url=server.base_url)
    server.script("p/one", Reply("nope", status=400))
    llm = FusionChatModel(
        analysis_models=["p/one"],
        model="judge/model",
        synthesis_model="synth/model",
        model_factory=registry,
    )
    with pytest.raises(FusionError) as caught:
        await llm.ainvoke(QUESTION)
    assert caught.value.result.failure_reason == "all_panels_failed"
    assert caught.value.result.failed_models[0].failure_reason == "invalid_request"


async def test_alias_progress_events_reach_callbacks(server: OpenAIServer) -> None:
    events: list[dict[str, Any]] = []

    class Events(AsyncCallbackHandler):
        async def on_custom_event(self, name: str, data: Any, **kw: Any) -> None:
            if name == "langfusion":
                events.append(data)

    registry = ModelRegistry(base_url=server.base_url)
    llm = FusionChatModel(
        analysis_models=["p/one", "p/two"],
        model="judge/model",
        synthesis_model="synth/model",
        model_factory=registry,
    )
    await llm.ainvoke(QUESTION, {"callbacks": [Events()]})
    kinds = [e["event"] for e in events]
    assert kinds.count("panel_started") == 2 and kinds.count("panel_finished") == 2
    assert (
        kinds.index("judge_started")
        < kinds.index("judge_finished")
        < kinds.index("synthesis_started")
    )


async def test_with_fusion_serves_the_caller_as_the_judge_only(server: OpenAIServer) -> None:
    # The caller is also on the panel: its panel answer comes from the registry's own
    # model for that slug (the panel's settings), only the judge is the caller itself.
    registry = ModelRegistry(base_url=server.base_url)
    server.script("caller/model", "the caller's panel answer", verdict())
    caller = ChatOpenAI(
        model="caller/model",
        base_url=server.base_url,
        api_key="k",
        temperature=0.8,
        default_headers={"x-caller": "yes"},
        max_retries=0,
        timeout=10,
    )  # type: ignore[arg-type]
    bound_tools: list[Any] = []
    caller.__dict__["bind_tools"] = lambda tools, **kw: bound_tools.extend(tools) or caller
    with_fusion(caller, analysis_models=["caller/model"], model_factory=registry)
    (tool_instance,) = bound_tools
    data = json.loads((await tool_instance.ainvoke(call({"prompt": QUESTION}))).content)
    assert data["responses"][0]["content"] == "the caller's panel answer"
    panel, judge = (r for r in server.requests_for("caller/model"))
    assert "temperature" not in panel.body and "x-caller" not in panel.headers
    assert judge.body["temperature"] == 0 and judge.headers["x-caller"] == "yes"


async def test_a_registered_ready_model_judges_at_temperature_zero_with_its_own_headers(
    server: OpenAIServer,
) -> None:
    registry = ModelRegistry(base_url=server.base_url)
    ready = ChatOpenAI(
        model="judge/model",
        base_url=server.base_url,
        api_key="k",
        temperature=0.9,
        default_headers={"x-team": "blue"},
        max_retries=0,
        timeout=10,
    )  # type: ignore[arg-type]
    registry.register("team/judge", ready)
    fusion = FusionTool(
        analysis_models=["p/one"], model="team/judge", model_factory=registry, web_tools=False
    )
    data = json.loads((await fusion.ainvoke(call({"prompt": QUESTION}))).content)
    assert data["status"] == "ok" and data["analysis"] is not None
    (judged,) = server.requests_for("judge/model")
    assert judged.body["temperature"] == 0 and judged.headers["x-team"] == "blue"
    assert ready.temperature == 0.9  # the registered model itself is left as it was
    # As a panel model, the same ready model keeps its own temperature.
    server.requests.clear()
    panel = FusionTool(analysis_models=["team/judge"], model="judge/model", model_factory=registry)
    await panel.ainvoke(call({"prompt": QUESTION}))
    first, _judge = server.requests_for("judge/model")
    assert first.body["temperature"] == 0.9


@pytest.mark.parametrize("path", ["invoke", "ainvoke", "batch", "abatch"])
def test_every_tool_call_path_returns_the_result_with_the_pipeline_under_the_tool_run(
    server: OpenAIServer, path: str
) -> None:
    import asyncio

    fusion = FusionTool(
        analysis_models=["p/one", "p/two"],
        model="judge/model",
        model_factory=ModelRegistry(base_url=server.base_url),
        web_tools=False,
    )
    tree = RunTree()
    config: Any = {"callbacks": [tree]}
    calls = {
        "invoke": lambda: [fusion.invoke(call({"prompt": QUESTION}), config)],
        "ainvoke": lambda: [asyncio.run(fusion.ainvoke(call({"prompt": QUESTION}), config))],
        "batch": lambda: fusion.batch([call({"prompt": QUESTION})] * 2, config),
        "abatch": lambda: asyncio.run(fusion.abatch([call({"prompt": QUESTION})] * 2, config)),
    }
    messages = calls[path]()
    for message in messages:
        data = json.loads(message.content)
        assert data["status"] == "ok" and [r["model"] for r in data["responses"]] == [
            "p/one",
            "p/two",
        ]
        assert isinstance(message.artifact, FusionResult)
    # The judge's structured-output call is one chat-model run under the judge's slug.
    judges = [run for run, name in tree.name.items() if name == "model:judge/model"]
    assert len(judges) == len(messages)
    for run in judges:
        assert "tool:fusion" in tree.ancestors(run)
