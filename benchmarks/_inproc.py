"""In-process instant chat models: the graph's own cost, with no HTTP at all."""

from __future__ import annotations

import asyncio
import inspect
import json
import string
from collections.abc import Awaitable, Callable
from typing import Any

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, SystemMessage
from langchain_core.outputs import ChatGeneration, ChatResult
from langchain_core.runnables import Runnable, RunnableLambda

from benchmarks._common import QUESTION
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


def graph_runner(*, async_routing: bool = False) -> Callable[[], Awaitable[Any]]:
    """The graph over instant models; ``async_routing`` makes ``fan_out``/``report`` async.

    LangGraph runs a sync node or edge function in the default thread pool;
    ``async_routing`` is the proposed change to ``graph/fusion.py``, applied
    here by wrapping the two methods while the graph is built.
    """
    from langfusion.graph import FusionContext, build_fusion_graph
    from langfusion.graph import fusion as fusion_module

    pipeline = fusion_module._Pipeline
    original = pipeline.fan_out, pipeline.report
    if async_routing:
        fan_out, report = original

        async def async_fan_out(self: Any, state: Any, runtime: Any) -> Any:
            out = fan_out(self, state, runtime)
            return await out if inspect.isawaitable(out) else out

        async def async_report(self: Any, state: Any, runtime: Any) -> Any:
            out = report(self, state, runtime)
            return await out if inspect.isawaitable(out) else out

        pipeline.fan_out, pipeline.report = async_fan_out, async_report  # type: ignore[assignment]
    try:
        graph = build_fusion_graph(model_factory=factory, web_tools=[])
    finally:
        pipeline.fan_out, pipeline.report = original  # type: ignore[method-assign]
    context = FusionContext(
        analysis_models=PANEL,
        model="inproc/judge",
        synthesis_model="inproc/synth",
        web_tools=False,
    )

    async def run() -> Any:
        out = await graph.ainvoke({"messages": [HumanMessage(QUESTION)]}, context=context)
        assert out["result"].status == "ok" and out["answer"]
        return out

    return run


def floor_runner() -> Callable[[], Awaitable[Any]]:
    """The same calls and prompts with ``asyncio.gather``: floor (a) without HTTP."""
    from langfusion.graph import JudgeVerdict
    from langfusion.graph.prompts import (
        JUDGE_RESPONSE,
        JUDGE_SYSTEM,
        JUDGE_USER,
        PANEL_SYSTEM,
        SYNTHESIS_SYSTEM,
        SYNTHESIS_USER,
    )

    judge = MODELS["inproc/judge"].with_structured_output(None, include_raw=True)

    async def run() -> str:
        question = [SystemMessage(PANEL_SYSTEM), HumanMessage(QUESTION)]
        replies = await asyncio.gather(*(MODELS[slug].ainvoke(question) for slug in PANEL))
        letters = string.ascii_uppercase[: len(PANEL)]
        labels = {f"Response {c}": slug for c, slug in zip(letters, PANEL, strict=True)}
        prompt = JUDGE_USER.format(
            question=QUESTION,
            responses="\n\n".join(
                JUDGE_RESPONSE.format(label=label, content=reply.text)
                for label, reply in zip(labels, replies, strict=True)
            ),
        )
        out = await judge.ainvoke([SystemMessage(JUDGE_SYSTEM), HumanMessage(prompt)])
        analysis = JudgeVerdict.model_validate(out["parsed"]).analysis().relabel(labels)
        prompt = SYNTHESIS_USER.format(
            question=QUESTION,
            analysis=analysis.model_dump_json(indent=1),
            responses="\n\n".join(
                JUDGE_RESPONSE.format(label=slug, content=reply.text)
                for slug, reply in zip(PANEL, replies, strict=True)
            ),
        )
        synth = MODELS["inproc/synth"]
        return (await synth.ainvoke([SystemMessage(SYNTHESIS_SYSTEM), HumanMessage(prompt)])).text

    return run
