"""Fusion runs started from the page, driven by the graph's own stream and fanned out to pages.

A run is one task iterating ``graph.astream`` (custom progress events, the
panel's and the synthesis's tokens, the final values). Every page that
follows it gets the events so far, then the live ones. When the last page
following a run goes away (Stop, or the tab closed), the task is cancelled,
and with it the run's model calls.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import time
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from langfusion.tools.playground.render import answer_html
from langfusion.tools.playground.store import RunStore

if TYPE_CHECKING:
    from langfusion.graph import FusionContext, FusionGraph

__all__ = ["Run", "RunManager", "finished_event"]

HEARTBEAT_S = 15.0
Event = dict[str, Any]


@dataclass
class Run:
    """One fusion in flight: what it was asked, what it has emitted, who follows it."""

    id: str
    question: str
    context: FusionContext
    created: float
    events: list[Event] = field(default_factory=list)
    followers: set[asyncio.Queue[Event]] = field(default_factory=set)
    task: asyncio.Task[None] | None = None
    # The replay entry of each (role, model, message id) stream: later tokens grow it.
    streams: dict[tuple[str, str, str], Event] = field(default_factory=dict)

    @property
    def settings(self) -> dict[str, Any]:
        """What the run was configured with: the given parameters and the models they resolve to."""
        ctx = self.context
        return {
            "given": {k: v for k, v in ctx.settings().items() if v is not None},
            "preset": ctx.preset_used,
            "panel": list(ctx.panel),
            "judge": ctx.judge,
            "synthesizer": ctx.synthesizer,
            "synthesize": ctx.synthesize,
        }

    def emit(self, event: Event) -> None:
        """Record ``event`` for pages that join later and hand it to those following now."""
        if event["type"] == "token":
            key = (event["role"], event["model"], event["message_id"])
            entry = self.streams.get(key)
            if entry is None:
                self.streams[key] = entry = {**event, "text": ""}
                self.events.append(entry)
            entry["text"] += event["text"]
        else:
            self.events.append(event)
        for queue in self.followers:
            queue.put_nowait(event)


def finished_event(
    state: str, result: dict[str, Any] | None, answer: str, error: str | None
) -> Event:
    """The last event of a run: how it ended, its SPEC result and its answer as safe HTML."""
    return {
        "type": "finished",
        "state": state,
        "result": result,
        "answer": answer,
        "answer_html": answer_html(answer) if answer else "",
        "error": error,
    }


class RunManager:
    """Starts, follows and cancels runs on one compiled graph shared by all of them.

    Args:
        build_graph: Builds the fusion graph, once, when the first run starts.
        store: Where runs are recorded.
    """

    def __init__(self, build_graph: Callable[[], FusionGraph], store: RunStore) -> None:
        self._build_graph = build_graph
        self._graph: FusionGraph | None = None
        self.store = store
        self.runs: dict[str, Run] = {}

    @property
    def graph(self) -> FusionGraph:
        """The compiled graph every run streams."""
        if self._graph is None:
            self._graph = self._build_graph()
        return self._graph

    async def start(self, question: str, context: FusionContext) -> Run:
        """Record a new run and start it."""
        run = Run(uuid.uuid4().hex, question, context, time.time())
        await self.store.create(run.id, run.created, question, run.settings)
        run.emit(
            {
                "type": "started",
                "id": run.id,
                "question": question,
                "created": run.created,
                **run.settings,
            }
        )
        self.runs[run.id] = run
        run.task = asyncio.create_task(self._drive(run), name=f"fusion-run-{run.id}")
        return run

    def cancel(self, run_id: str) -> bool:
        """Cancel a run in flight; ``False`` when it is not running."""
        run = self.runs.get(run_id)
        if run is None or run.task is None or run.task.done():
            return False
        run.task.cancel()
        return True

    async def follow(self, run_id: str) -> AsyncIterator[Event | None]:
        """A run's events from the start, then live until it finishes; ``None`` is a heartbeat.

        A run that finished earlier (in this process or before it) replays
        from the store. Leaving a live run as its last follower cancels it.
        """
        run = self.runs.get(run_id)
        if run is None:
            record = await self.store.get(run_id)
            if record is None:
                return
            for event in record["events"]:
                yield event
            yield finished_event(
                record["state"], record["result"], record["answer"], record["error"]
            )
            return
        queue: asyncio.Queue[Event] = asyncio.Queue()
        replay = [dict(event) for event in run.events]
        run.followers.add(queue)
        try:
            for event in replay:
                yield event
            if replay and replay[-1]["type"] == "finished":
                return
            while True:
                try:
                    event = await asyncio.wait_for(queue.get(), HEARTBEAT_S)
                except TimeoutError:
                    yield None
                    continue
                yield event
                if event["type"] == "finished":
                    return
        finally:
            run.followers.discard(queue)
            if not run.followers:
                self.cancel(run_id)

    async def _drive(self, run: Run) -> None:
        from langchain_core.messages import HumanMessage

        from langfusion.graph.errors import redact
        from langfusion.graph.schema import FusionResult

        state, result, answer, error = "error", None, "", None
        final: dict[str, Any] = {}
        try:
            stream: AsyncIterator[Any] = self.graph.astream(
                {"messages": [HumanMessage(run.question)]},
                {"run_name": "fusion", "metadata": {"fusion_id": run.id}},
                # The page shows each panel model's text as it comes.
                context=dataclasses.replace(run.context, stream_panel_tokens=True),
                stream_mode=["messages", "custom", "values"],
            )
            async for mode, payload in stream:
                if mode == "custom":
                    run.emit({"type": "progress", **payload})
                elif mode == "messages":
                    self._token(run, *payload)
                else:
                    final = payload
            if final.get("result") is None:
                raise RuntimeError("the fusion run ended without a result")
            state, answer = "done", str(final.get("answer") or "")
            result = FusionResult.model_validate(final["result"]).model_dump(mode="json")
        except asyncio.CancelledError:
            state = "cancelled"
        except Exception as exc:  # noqa: BLE001 - the run's edge: shown on the page, typed
            error = redact(" ".join(f"{type(exc).__name__}: {exc}".split()))
        finally:
            with contextlib.suppress(Exception):  # a full disk must not hide the outcome
                await self.store.finish(
                    run.id,
                    state=state,
                    events=run.events,
                    result=result,
                    answer=answer,
                    error=error,
                )
            self.runs.pop(run.id, None)
            run.emit(finished_event(state, result, answer, error))

    def _token(self, run: Run, chunk: Any, metadata: dict[str, Any]) -> None:
        text = chunk.text
        if not text:
            return
        node = metadata.get("langgraph_node")
        if node == "synthesize":
            role, model = "synthesis", run.context.synthesizer
        elif node == "analyze" and metadata.get("fusion_model"):
            role, model = "panel", str(metadata["fusion_model"])
        else:
            return
        # A new message id is a new attempt (or tool round): the page starts its text afresh.
        message_id = str(chunk.id or "")
        run.emit(
            {"type": "token", "role": role, "model": model, "message_id": message_id, "text": text}
        )

    async def close(self) -> None:
        """Cancel every run in flight and wait until each has recorded how it ended."""
        tasks = [run.task for run in self.runs.values() if run.task and not run.task.done()]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
