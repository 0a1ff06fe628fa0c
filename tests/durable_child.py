"""One durable fusion in its own process, for tests/test_durable.py.

Usage: ``python tests/durable_child.py STORE THREAD_ID (QUESTION | --resume)``, where
STORE is ``sqlite:PATH`` or a ``postgresql://`` URL. The models come from the
default registry (``OPENROUTER_BASE_URL``/``OPENROUTER_API_KEY``): panel
``p/fast`` and ``p/slow``, judge ``judge/model``, synthesis ``synth/model``.
Prints the result and the answer as one JSON line when the run completes.

``python tests/durable_child.py memory:ROUTE THREAD_ID --check-state`` runs one
fusion (panel ``p/fast`` and ``p/gone``) on an in-memory saver that reaches the
graph by ROUTE (``compiled``, ``copy`` or ``assigned``), then reads the thread's
state back and says whether it equals the run's output.
"""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from langchain_core.messages import HumanMessage
from langgraph.checkpoint.base import BaseCheckpointSaver

from langfusion.graph import FusionContext, build_fusion_graph

CONTEXT = FusionContext(
    analysis_models=["p/fast", "p/slow"],
    model="judge/model",
    synthesis_model="synth/model",
    web_tools=False,
)


@asynccontextmanager
async def checkpointer(store: str) -> AsyncIterator[BaseCheckpointSaver[Any]]:
    if store.startswith("sqlite:"):
        from langgraph.checkpoint.sqlite.aio import AsyncSqliteSaver

        async with AsyncSqliteSaver.from_conn_string(store.removeprefix("sqlite:")) as saver:
            yield saver
    else:
        from langgraph.checkpoint.postgres.aio import AsyncPostgresSaver

        async with AsyncPostgresSaver.from_conn_string(store) as saver:
            await saver.setup()
            yield saver


async def check_state(route: str, thread_id: str) -> None:
    from langgraph.checkpoint.memory import InMemorySaver

    saver = InMemorySaver()
    if route == "compiled":
        graph = build_fusion_graph(checkpointer=saver, web_tools=[])
    elif route == "copy":  # what the LangGraph server does with a graph it serves
        graph = build_fusion_graph(web_tools=[]).copy(update={"checkpointer": saver})
    else:
        graph = build_fusion_graph(web_tools=[])
        graph.checkpointer = saver
    config: Any = {"configurable": {"thread_id": thread_id}}
    context = FusionContext(
        analysis_models=["p/fast", "p/gone"],
        model="judge/model",
        synthesis_model="synth/model",
        web_tools=False,
    )
    out = await graph.ainvoke(
        {"messages": [HumanMessage("Fixed or ARM?")]}, config, context=context
    )
    state = await graph.aget_state(config)
    matches = (
        state.values["result"] == out["result"]
        and state.values["responses"] == out["result"]["responses"]
        and state.values["analysis"] == out["result"]["analysis"]
    )
    result = out["result"]
    sys.stdout.write(json.dumps({"result": result, "state_matches": matches}) + "\n")


async def main(store: str, thread_id: str, question: str) -> None:
    if store.startswith("memory:"):
        await check_state(store.removeprefix("memory:"), thread_id)
        return
    async with checkpointer(store) as saver:
        graph = build_fusion_graph(checkpointer=saver, web_tools=[])
        inputs = None if question == "--resume" else {"messages": [HumanMessage(question)]}
        out = await graph.ainvoke(
            inputs, {"configurable": {"thread_id": thread_id}}, context=CONTEXT
        )
    result = out["result"]
    sys.stdout.write(json.dumps({"result": result, "answer": out["answer"]}) + "\n")


if __name__ == "__main__":
    asyncio.run(main(*sys.argv[1:4]))
