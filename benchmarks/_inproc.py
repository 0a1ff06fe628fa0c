"""In-process instant chat models: the graph's own cost, with no HTTP at all."""

from __future__ import annotations

import asyncio
import itertools
import json
from collections.abc import Awaitable, Callable
from typing import Any

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, SystemMessage
from langchain_core.outputs import ChatGeneration, ChatResult
from langchain_core.runnables import Runnable, RunnableConfig, RunnableLambda

from benchmarks._common import QUESTION, bare_graph, judge_prompt, synthesis_prompt
from benchmarks.server import VERDICT, prose


class InstantModel(BaseChatModel):
    """Answers at once with a fixed reply and usage; structured output parses it as JSON."""

    reply: str = "an answer"

    @property
    def _llm_type(self) -> str:
        return "instant"

    def _generate(self, messages: list[BaseMessage], *args: Any, **kwargs: Any) -> ChatResult:
        raise NotImplementedError("async only")

    async def _agenerate(
        self, messages: list[BaseMessage], *args: Any, **kwargs: Any
    ) -> ChatResult:
        usage = {"input_tokens": 100, "output_tokens": 100, "total_tokens": 200}
        message = AIMessage(content=self.reply, usage_metadata=usage)  # type: ignore[arg-type]
        return ChatResult(generations=[ChatGeneration(message=message)])

    def with_structured_output(  # type: ignore[override]
        self, schema: Any, *, include_raw: bool = False, **kwargs: Any
    ) -> Runnable[Any, Any]:
        async def parse(messages: Any) -> dict[str, Any]:
            raw = await self.ainvoke(messages)
            return {"raw": raw, "parsed": json.loads(raw.text), "parsing_error": None}

        return RunnableLambda(parse)


PANEL = [f"inproc/p{i}" for i in range(8)]
MODELS: dict[str, BaseChatModel] = {
    **{slug: InstantModel(reply=prose(400, seed=i)) for i, slug in enumerate(PANEL)},
    "inproc/judge": InstantModel(reply=json.dumps(VERDICT)),
    "inproc/synth": InstantModel(reply="The synthesis answer."),
}


def factory(slug: str, /, **settings: Any) -> BaseChatModel:
    return MODELS[slug]


def graph_runner(*, durable: bool = False) -> Callable[[], Awaitable[Any]]:
    """The graph over instant models; ``durable`` compiles it with an ``InMemorySaver``.

    A durable run writes a checkpoint after every superstep (one thread per
    run here), which is what ``checkpointer=`` costs on top of the graph.
    """
    from langgraph.checkpoint.memory import InMemorySaver

    from langfusion.graph import FusionContext, build_fusion_graph

    graph = build_fusion_graph(
        model_factory=factory, web_tools=[], checkpointer=InMemorySaver() if durable else None
    )
    context = FusionContext(
        analysis_models=PANEL,
        model="inproc/judge",
        synthesis_model="inproc/synth",
        web_tools=False,
    )
    runs = itertools.count()

    async def run() -> Any:
        config: RunnableConfig = (
            {"configurable": {"thread_id": f"bench-{next(runs)}"}} if durable else {}
        )
        out = await graph.ainvoke({"messages": [HumanMessage(QUESTION)]}, config, context=context)
        assert out["result"]["status"] == "ok" and out["answer"]
        return out

    return run


_JUDGE = MODELS["inproc/judge"].with_structured_output(None, include_raw=True)


async def _panel_call(slug: str) -> tuple[str, str]:
    from langfusion.graph.prompts import PANEL_SYSTEM

    reply = await MODELS[slug].ainvoke([SystemMessage(PANEL_SYSTEM), HumanMessage(QUESTION)])
    return slug, reply.text


async def _judge_call(answers: list[tuple[str, str]]) -> str:
    """The judge's call; returns the synthesis prompt built from its verdict."""
    from langfusion.graph.prompts import JUDGE_SYSTEM

    prompt, labels = judge_prompt(answers)
    out = await _JUDGE.ainvoke([SystemMessage(JUDGE_SYSTEM), HumanMessage(prompt)])
    return synthesis_prompt(out["parsed"], labels, answers)


async def _synthesis_call(prompt: str) -> str:
    from langfusion.graph.prompts import SYNTHESIS_SYSTEM

    synth = MODELS["inproc/synth"]
    return (await synth.ainvoke([SystemMessage(SYNTHESIS_SYSTEM), HumanMessage(prompt)])).text


def floor_runner() -> Callable[[], Awaitable[Any]]:
    """The same calls and prompts with ``asyncio.gather``: floor (a) without HTTP."""

    async def run() -> str:
        answers = list(await asyncio.gather(*(_panel_call(slug) for slug in PANEL)))
        return await _synthesis_call(await _judge_call(answers))

    return run


def bare_graph_runner() -> Callable[[], Awaitable[Any]]:
    """The same calls in a minimal LangGraph graph of the fusion graph's shape.

    What LangGraph's orchestration costs by itself; the fusion graph minus
    this is what langfusion's nodes add (depth, ids, deadlines, labels, the result).
    """
    graph = bare_graph(PANEL, _panel_call, _judge_call, _synthesis_call)

    async def run() -> Any:
        out = await graph.ainvoke({"replies": []})
        assert out["answer"]
        return out

    return run
