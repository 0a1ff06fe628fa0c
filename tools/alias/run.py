"""One run of the model alias: the graph driven as a stream of answer text and one ending.

``FusionChatModel`` turns what this yields into LangChain chunks and messages on
every call path; the pieces that every path shares live here: the run's input
(the conversation, the caller's synthesis options, an earlier analysis to
reuse), the progress events relayed to callbacks, the answer text with a
failed synthesis attempt's tokens held back, and the result.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import threading
from collections import OrderedDict
from collections.abc import AsyncGenerator, Sequence
from dataclasses import dataclass, field
from typing import Any, cast

from langchain_core.callbacks.manager import adispatch_custom_event
from langchain_core.messages import AIMessage, AIMessageChunk, BaseMessage, ToolMessage
from langchain_core.messages.ai import UsageMetadata
from langchain_core.messages.tool import tool_call_chunk
from langchain_core.runnables import RunnableConfig

from langfusion.graph.context import FusionContext
from langfusion.graph.conversation import conversation
from langfusion.graph.fusion import FusionGraph
from langfusion.graph.schema import FusionResult
from langfusion.graph.state import FusionInput, SynthesisOptions, loaded, plain
from langfusion.tools.alias.callbacks import pipeline_context, relays_events

FUSION_EVENT = "langfusion"

# Conversations whose analysis an alias keeps for the next step of an agent loop.
MAX_CONVERSATIONS = 128

# Call options a caller may bind (`bind_tools`, `with_structured_output`, `bind`).
CALL_OPTIONS = (
    "tools",
    "tool_choice",
    "strict",
    "parallel_tool_calls",
    "response_format",
    "max_tokens",
)


class FusionError(RuntimeError):
    """A fusion produced nothing usable; ``result`` keeps whatever it did produce.

    ``answer`` is the final answer where there is one that a stream could not
    deliver (a synthesis cut midway whose retry wrote a different answer);
    otherwise ``None``.
    """

    def __init__(
        self, result: FusionResult, message: str | None = None, *, answer: str | None = None
    ) -> None:
        self.result = result
        self.answer = answer
        super().__init__(message or f"{result.failure_reason}: {result.error}")


@dataclass
class Ending:
    """How a run ended: its result, the final answer and the synthesis's own message.

    ``unsent`` is the part of the answer a streaming caller has not received
    yet; ``None`` when what it did receive is not the start of the answer (a
    synthesis cut midway and retried wrote a different one).
    """

    result: FusionResult
    answer: str
    reply: BaseMessage | None
    unsent: str | None

    @property
    def tool_calls(self) -> list[Any]:
        """The tool calls the synthesis made (an agent's next step)."""
        return list(getattr(self.reply, "tool_calls", None) or [])

    def metadata(self, model_name: str) -> dict[str, Any]:
        """``response_metadata`` of the alias's message.

        ``cost`` (US dollars) and ``cost_source`` total every call of the run,
        where a cost is known; the result in ``fusion`` has it by step and by call.
        """
        total = self.result.usage.total
        known = total.cost is not None
        cost = {"cost": total.cost, "cost_source": total.cost_source} if known else {}
        return {
            "model_name": model_name,
            "finish_reason": "tool_calls" if self.tool_calls else "stop",
            **cost,
            "fusion": self.result.model_dump(mode="json"),
        }

    def usage(self) -> UsageMetadata:
        """Every model call of the run, totalled."""
        total = self.result.usage.total
        return UsageMetadata(
            input_tokens=total.input_tokens,
            output_tokens=total.output_tokens,
            total_tokens=total.total_tokens,
        )

    def message(self, model_name: str) -> AIMessage:
        """The whole answer, for ``invoke``: exactly the final answer."""
        return AIMessage(
            content=self.answer,
            tool_calls=self.tool_calls,
            usage_metadata=self.usage(),
            response_metadata=self.metadata(model_name),
        )

    def last_chunk(self, model_name: str) -> AIMessageChunk:
        """The stream's last chunk: the rest of the answer, the tool calls, usage and result.

        Raises:
            FusionError: The text already streamed is not the start of the answer.
        """
        if self.unsent is None:
            raise FusionError(
                self.result,
                "synthesis_failed: the synthesis stream was cut midway and its retry wrote a "
                "different answer, so the text streamed so far is not the answer; the "
                "error's answer holds it whole, as invoke() returns it.",
                answer=self.answer,
            )
        calls = [
            tool_call_chunk(name=c["name"], args=json.dumps(c["args"]), id=c["id"], index=i)
            for i, c in enumerate(self.tool_calls)
        ]
        return AIMessageChunk(
            content=self.unsent,
            tool_call_chunks=calls,
            usage_metadata=self.usage(),
            response_metadata=self.metadata(model_name),
            chunk_position="last",
        )


@dataclass
class AnswerText:
    """The answer as streamed: a retried attempt's tokens pass only beyond what was sent.

    The first attempt streams as it comes. When the synthesis is retried, the
    new attempt is held back until it has rewritten what was already sent, and
    then streams on from there; if it wrote something else, nothing more is
    sent and the ending says so.
    """

    sent: str = ""
    attempt: str = ""

    def restart(self) -> None:
        """A new attempt of the synthesis begins."""
        self.attempt = ""

    def add(self, text: str) -> str:
        """Take ``text`` of the attempt; return what of it may be sent now."""
        self.attempt += text
        if len(self.attempt) <= len(self.sent) or not self.attempt.startswith(self.sent):
            return ""
        new, self.sent = self.attempt[len(self.sent) :], self.attempt
        return new

    def unsent(self, answer: str) -> str | None:
        """What of the final ``answer`` was not sent yet (``None``: it differs from what was)."""
        return answer[len(self.sent) :] if answer.startswith(self.sent) else None


@dataclass
class Analyses:
    """The analyses an alias made, by conversation, for the next steps of an agent loop.

    Keyed by the conversation up to its question, so two conversations never
    share one; the oldest is forgotten beyond ``limit``.
    """

    limit: int = MAX_CONVERSATIONS
    _kept: OrderedDict[str, FusionResult] = field(default_factory=OrderedDict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def get(self, key: str) -> FusionResult | None:
        """The analysis kept for the conversation ``key``, if any."""
        with self._lock:
            result = self._kept.get(key)
            if result is not None:
                self._kept.move_to_end(key)
            return result

    def keep(self, key: str, result: FusionResult) -> None:
        """Keep ``result`` for the conversation ``key``, forgetting the oldest beyond the limit."""
        with self._lock:
            self._kept[key] = result
            self._kept.move_to_end(key)
            while len(self._kept) > self.limit:
                self._kept.popitem(last=False)

    def __len__(self) -> int:
        return len(self._kept)


def conversation_key(messages: Sequence[BaseMessage]) -> str | None:
    """What identifies a question in its conversation: every turn up to it, ids aside."""
    asked = conversation(list(messages))  # type: ignore[arg-type]
    if not asked:
        return None
    turns = [
        [m.type, m.content, [[c["name"], c["args"]] for c in getattr(m, "tool_calls", None) or []]]
        for m in asked
    ]
    return hashlib.sha256(json.dumps(turns, sort_keys=True, default=str).encode()).hexdigest()


def synthesis_options(
    owner: str, stop: list[str] | None, kwargs: dict[str, Any]
) -> SynthesisOptions | None:
    """The caller's bound options for the synthesis call; an unknown one is an error naming it."""
    unknown = sorted(set(kwargs) - set(CALL_OPTIONS))
    if unknown:
        raise ValueError(
            f"{owner} got unknown call option(s) {', '.join(map(repr, unknown))}; it takes "
            f"{', '.join(CALL_OPTIONS)} (from bind_tools / with_structured_output) and stop."
        )
    options = {k: v for k, v in kwargs.items() if v is not None}
    if stop:
        options["stop"] = list(stop)
    return cast(SynthesisOptions, options) if options else None


_DONE = object()


async def run_alias(
    graph: FusionGraph,
    context: FusionContext,
    analyses: Analyses,
    messages: list[BaseMessage],
    options: SynthesisOptions | None,
    config: RunnableConfig,
) -> AsyncGenerator[str | Ending, None]:
    """Run the pipeline for a chat-model caller: answer text as it streams, then the ending.

    When the conversation ends with a tool result and this alias answered its
    question before, the earlier analysis is reused: only the synthesis runs.

    Raises:
        FusionError: Nothing usable came out, or the synthesis failed.
    """
    key = conversation_key(messages)
    earlier = (
        analyses.get(key) if key and messages and isinstance(messages[-1], ToolMessage) else None
    )
    inputs: dict[str, Any] = {"messages": messages}
    if earlier is not None:
        inputs["reuse"] = plain(earlier)
    if options:
        inputs["synthesis_options"] = options
    items: asyncio.Queue[Any] = asyncio.Queue()
    relay = relays_events(config.get("callbacks"))

    async def produce() -> None:
        try:
            async for mode, payload in graph.astream(
                cast(FusionInput, inputs),
                config,
                context=context,
                stream_mode=["messages", "custom", "updates", "values"],
            ):
                if mode == "custom" and relay:
                    await adispatch_custom_event(FUSION_EVENT, payload, config=config)
                items.put_nowait((mode, payload))
        except BaseException as exc:  # noqa: BLE001 - re-raised by the consuming side
            items.put_nowait(exc)
        finally:
            items.put_nowait(_DONE)

    producer = asyncio.get_running_loop().create_task(produce(), context=pipeline_context(config))
    text = AnswerText()
    final: dict[str, Any] = {}
    reply: BaseMessage | None = None
    try:
        while (item := await items.get()) is not _DONE:
            if isinstance(item, BaseException):
                raise item
            mode, payload = item
            if mode == "messages":
                chunk, metadata = payload
                if metadata.get("langgraph_node") == "synthesize" and (new := text.add(chunk.text)):
                    yield new
            elif mode == "custom" and payload.get("event") == "synthesis_started":
                text.restart()
            elif mode == "updates":
                written = (payload.get("synthesize") or {}).get("messages")
                if written:
                    reply = written[-1]
            elif mode == "values":
                final = payload
    finally:
        if not producer.done():
            producer.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await producer
    result = loaded(FusionResult, final.get("result"))
    if result is None:
        raise FusionError(
            FusionResult.failure("The run ended without a result.", "invalid_request")
        )
    if result.status == "error" or result.failure_reason == "synthesis_failed":
        raise FusionError(result)
    if earlier is None and key is not None:
        analyses.keep(key, result)
    answer = str(final.get("answer") or "")
    yield Ending(result=result, answer=answer, reply=reply, unsent=text.unsent(answer))
