"""``build_fusion_graph``: the nodes, their edges and their policies."""

from __future__ import annotations

import json
from typing import Any, TypeAlias

from langgraph.cache.base import BaseCache
from langgraph.graph import END, START, StateGraph
from langgraph.graph.state import CompiledStateGraph
from langgraph.types import CachePolicy, Checkpointer, RetryPolicy

from langfusion.graph.context import FusionContext
from langfusion.graph.errors import is_transient
from langfusion.graph.models import ModelFactory, default_registry
from langfusion.graph.nodes import Nodes, WebTools
from langfusion.graph.state import FusionInput, FusionOutput, FusionState, PanelTask

FusionGraph: TypeAlias = CompiledStateGraph[FusionState, FusionContext, FusionInput, FusionOutput]
"""The compiled fusion graph, as ``build_fusion_graph`` returns it."""

# Model calls retry inside the client (429/5xx/connection errors, honouring
# Retry-After) under one deadline per call. The synthesis also retries as a
# node, for a stream cut off after it began; the retry comes under a new
# message id in the "messages" stream.
_SYNTHESIS_RETRY = RetryPolicy(
    max_attempts=2, initial_interval=0.5, max_interval=2.0, retry_on=is_transient
)


def panel_cache_key(task: PanelTask) -> str:
    """What makes two panel calls interchangeable: model, conversation and settings."""
    asked = [(m.type, m.content) for m in task["messages"]]
    return json.dumps(
        [task["slug"], task["instructions"], asked, task["settings"]], sort_keys=True, default=str
    )


def build_fusion_graph(
    *,
    model_factory: ModelFactory | None = None,
    web_tools: WebTools = (),
    checkpointer: Checkpointer = None,
    cache: BaseCache[Any] | None = None,
    cache_ttl_s: int | None = 3600,
    name: str = "fusion",
) -> FusionGraph:
    """Build the fusion graph.

    Args:
        model_factory: Turns a slug into a chat model; defaults to the
            OpenRouter/OpenAI-compatible registry (``register_model`` adds slugs).
        web_tools: Tools for panel calls (a list, or a function returning
            one, called once when first needed). The entry points in
            ``langfusion.tools`` pass ``web_search`` and ``web_fetch``; the
            graph alone offers none.
        checkpointer: Makes runs durable: a run that dies mid-panel resumes
            without calling the models that already answered.
        cache: Reuse panel answers for an identical (conversation, model,
            settings), e.g. ``InMemoryCache()`` or ``SqliteCache(path=...)``.
            Off by default: deliberation usually wants fresh answers.
        cache_ttl_s: How long a cached panel answer stays valid.
        name: The graph's name in traces.

    Returns:
        The compiled graph. Invoke it with ``{"messages": [...]}`` and
        ``context=FusionContext(...)``; it returns ``{"result", "answer"}``.
    """
    nodes = Nodes(model_factory or default_registry, web_tools, cache_keys=cache is not None)
    builder = StateGraph(
        FusionState,
        context_schema=FusionContext,
        input_schema=FusionInput,
        output_schema=FusionOutput,
    )
    builder.add_node("prepare", nodes.prepare)
    builder.add_node(  # type: ignore[call-overload]  # stubs miss Send-input nodes
        "analyze",
        nodes.analyze,
        input_schema=PanelTask,
        cache_policy=CachePolicy(key_func=panel_cache_key, ttl=cache_ttl_s) if cache else None,
        error_handler=nodes.record_panel_failure,
    )
    builder.add_node("tally", nodes.tally)
    builder.add_node("judge", nodes.judge, error_handler=nodes.record_judge_failure)
    builder.add_node(
        "synthesize",
        nodes.synthesize,
        retry_policy=_SYNTHESIS_RETRY,
        error_handler=nodes.record_synthesis_failure,
    )
    builder.add_node("report", nodes.report)
    builder.add_edge(START, "prepare")
    # A run that reuses an earlier analysis (an agent loop's next step) goes
    # straight to the synthesis (or, for a caller that writes its own answer, the report).
    builder.add_conditional_edges(
        "prepare", nodes.fan_out, ["analyze", "synthesize", "report", END]
    )
    builder.add_edge("analyze", "tally")
    builder.add_conditional_edges("tally", nodes.after_panel, ["judge", END])
    builder.add_conditional_edges("judge", nodes.after_judge, ["synthesize", "report"])
    builder.add_edge("synthesize", "report")
    builder.add_edge("report", END)
    return builder.compile(checkpointer=checkpointer, cache=cache, name=name)
