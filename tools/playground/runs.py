"""Fusion runs started from the page, driven by the graph's own stream and fanned out to pages.

A run is one task iterating ``graph.astream`` (custom progress events, the
panel's and the synthesis's tokens, the final values) in the process whose
server was asked to start it. Pages that this process serves follow it from
memory: the events so far, then the live ones. Pages that another server
process serves (``langfusion serve --workers N``) tail the journal that the
driving process appends to the shared store, and a Stop asked there is a
flag the driver polls. When the last page following a run goes away (Stop,
or the tab closed), the task is cancelled, and with it the run's model calls.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import sqlite3
import time
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from langfusion.tools.playground.render import answer_html
from langfusion.tools.playground.store import BEAT_S, RunStore

if TYPE_CHECKING:
    from langfusion.graph import FusionContext, FusionGraph

__all__ = ["Run", "RunManager", "finished_event"]

HEARTBEAT_S = 15.0
# How often a driver looks for a stop asked elsewhere and writes its journal,
# and how often a page served by another process looks for new events.
POLL_S = 0.1
Event = dict[str, Any]
_StreamKey = tuple[str, str, str]


@dataclass
class Run:
    """One fusion in flight here: what it was asked, what it has emitted, who follows it."""

    id: str
    question: str
    context: FusionContext
    created: float
    events: list[Event] = field(default_factory=list)
    followers: set[asyncio.Queue[Event]] = field(default_factory=set)
    task: asyncio.Task[None] | None = None
    # The replay entry of each (role, model, message id) stream: later tokens grow it.
    streams: dict[_StreamKey, Event] = field(default_factory=dict)
    # Events not yet in the store's journal; a token grows its stream's pending
    # entry until another kind of event comes, so the journal keeps the order.
    pending: list[Event] = field(default_factory=list)
    pending_streams: dict[_StreamKey, Event] = field(default_factory=dict)
    unsent: list[tuple[int, str]] = field(default_factory=list)
    seq: int = 0
    # Pages following from other processes, as last counted, and whether any page ever followed.
    far_followers: int = 0
    followed: bool = False
    stopping: bool = False
    ended: asyncio.Event = field(default_factory=asyncio.Event)

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
            waiting = self.pending_streams.get(key)
            if waiting is None:
                self.pending_streams[key] = waiting = {**event, "text": ""}
                self.pending.append(waiting)
            waiting["text"] += event["text"]
        else:
            self.events.append(event)
            self.pending.append(event)
            self.pending_streams.clear()
        for queue in self.followers:
            queue.put_nowait(event)

    def journal(self, *last: Event) -> list[tuple[int, str]]:
        """The journal rows not yet written (numbered, as JSON), ``last`` after them."""
        for event in (*self.pending, *last):
            self.seq += 1
            self.unsent.append((self.seq, json.dumps(event, ensure_ascii=False)))
        self.pending.clear()
        self.pending_streams.clear()
        return list(self.unsent)

    def journaled(self, rows: int) -> None:
        """Forget the first ``rows`` unsent rows: the store has them."""
        del self.unsent[:rows]


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
        store: Where runs are recorded, shared with the other server processes.
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
        """Record a new run and start it here."""
        run = Run(uuid.uuid4().hex, question, context, time.time())
        run.emit(
            {
                "type": "started",
                "id": run.id,
                "question": question,
                "created": run.created,
                **run.settings,
            }
        )
        rows = run.journal()
        await self.store.create(run.id, run.created, question, run.settings, journal=rows)
        run.journaled(len(rows))
        self.runs[run.id] = run
        run.task = asyncio.create_task(self._drive(run), name=f"fusion-run-{run.id}")
        return run

    async def cancel(self, run_id: str) -> bool:
        """Cancel a run in flight, whichever process drives it; ``False`` when it is not running."""
        run = self.runs.get(run_id)
        if run is not None:
            return self._stop(run)
        return await self.store.request_stop(run_id)

    @staticmethod
    def _stop(run: Run) -> bool:
        if run.task is None or run.task.done() or run.ended.is_set():
            return False
        if not run.stopping:  # a second cancel would cut the recording of how it ended
            run.stopping = True
            run.task.cancel()
        return True

    async def follow(self, run_id: str) -> AsyncIterator[Event | None]:
        """A run's events from the start, then live until it finishes; ``None`` is a heartbeat.

        A run driven here is followed from memory; one driven by another
        process, from the store's journal; one that finished earlier (in any
        process, or before a restart) replays from its record. Leaving a live
        run as its last follower cancels it.
        """
        run = self.runs.get(run_id)
        if run is not None:
            async for event in self._follow_here(run):
                yield event
            return
        record = await self.store.get(run_id)
        if record is None:
            return
        if record["state"] == "running":
            async for event in self._follow_elsewhere(run_id):
                yield event
            return
        for event in record["events"]:
            yield event
        yield finished_event(record["state"], record["result"], record["answer"], record["error"])

    async def _follow_here(self, run: Run) -> AsyncIterator[Event | None]:
        queue: asyncio.Queue[Event] = asyncio.Queue()
        replay = [dict(event) for event in run.events]
        run.followers.add(queue)
        run.followed = True
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
            # The driver's next look at the store decides whether it was the last page.
            run.followers.discard(queue)

    async def _follow_elsewhere(self, run_id: str) -> AsyncIterator[Event | None]:
        loop = asyncio.get_running_loop()
        follower = uuid.uuid4().hex
        after, spoke, beat = 0, loop.time(), float("-inf")
        try:
            while True:
                now = loop.time()
                due = now - beat >= BEAT_S
                tail = await self.store.tail(run_id, after, follower, beat=due)
                beat = now if due else beat
                for seq, event in tail.events:
                    after = seq
                    yield event
                    if event["type"] == "finished":
                        return
                if tail.state != "running":  # interrupted, or its journal is gone
                    record = await self.store.get(run_id)
                    if record is not None:
                        yield finished_event(
                            record["state"], record["result"], record["answer"], record["error"]
                        )
                    return
                if tail.events:
                    spoke = now
                elif now - spoke >= HEARTBEAT_S:
                    spoke = now
                    yield None
                await asyncio.sleep(POLL_S)
        finally:
            self.store.leave_soon(run_id, follower)

    async def _drive(self, run: Run) -> None:
        from langchain_core.messages import HumanMessage

        from langfusion.graph.errors import redact
        from langfusion.graph.schema import FusionResult

        state, result, answer, error = "error", None, "", None
        final: dict[str, Any] = {}
        keeper = asyncio.create_task(self._keep(run), name=f"fusion-run-{run.id}-keeper")
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
            run.ended.set()
            # Its last write lands before the journal's last rows.
            with contextlib.suppress(Exception):
                await keeper
            finished = finished_event(state, result, answer, error)
            with contextlib.suppress(Exception):  # a full disk must not hide the outcome
                await self.store.finish(
                    run.id,
                    state=state,
                    events=run.events,
                    result=result,
                    answer=answer,
                    error=error,
                    journal=run.journal(finished),
                )
            self.runs.pop(run.id, None)
            run.emit(finished)

    async def _keep(self, run: Run) -> None:
        """While a run goes: write its journal, beat, and stop it when asked elsewhere."""
        loop = asyncio.get_running_loop()
        beat = loop.time()
        while True:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(POLL_S):
                    await run.ended.wait()
            if run.ended.is_set():
                return
            rows = run.journal()
            now = loop.time()
            due = now - beat >= BEAT_S
            stop = False
            try:
                control = await self.store.sync(run.id, rows, beat=due)
            except sqlite3.Error:  # a busy or full disk: the rows go with the next write
                pass
            else:
                run.journaled(len(rows))
                beat = now if due else beat
                stop, run.far_followers = control
            if stop:
                self._stop(run)
            elif run.followers or run.far_followers:
                run.followed = True
            elif run.followed:  # the last page following it, here or elsewhere, has left
                self._stop(run)

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
        for run in list(self.runs.values()):
            self._stop(run)
        await asyncio.gather(*tasks, return_exceptions=True)
