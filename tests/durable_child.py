"""One durable fusion in its own process, for tests/test_durable.py.

Usage: ``python tests/durable_child.py STORE THREAD_ID (QUESTION | --resume)``, where
STORE is ``sqlite:PATH`` or a ``postgresql://`` URL. The models come from the
default registry (``OPENROUTER_BASE_URL``/``OPENROUTER_API_KEY``): panel
``p/fast`` and ``p/slow``, judge ``judge/model``, synthesis ``synth/model``.
Prints the result and the answer as one JSON line when the run completes.
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


async def main(store: str, thread_id: str, question: str) -> None:
    async with checkpointer(store) as saver:
        graph = build_fusion_graph(checkpointer=saver, web_tools=[])
        inputs = None if question == "--resume" else {"messages": [HumanMessage(question)]}
        out = await graph.ainvoke(
            inputs, {"configurable": {"thread_id": thread_id}}, context=CONTEXT
        )
    result = out["result"].model_dump(mode="json")
    sys.stdout.write(json.dumps({"result": result, "answer": out["answer"]}) + "\n")


if __name__ == "__main__":
    asyncio.run(main(*sys.argv[1:4]))
