"""The outer loop: the request's model with the fusion tool bound.

The calling model is the request's own model, built by the model registry
with the ``fusion`` tool (``FusionTool``) and the client's function tools
bound. When it calls ``fusion`` the server runs the pipeline and hands the
result back as the tool result; when it calls one of the client's tools the
loop ends and the calls go back to the client; when it answers, that is the
response. A plain completion is the same loop with no fusion tool; the alias
is in ``alias``.
"""

from __future__ import annotations

import functools
import json
import uuid
from collections.abc import AsyncIterator, Mapping
from typing import Any

from langchain_core.language_models import BaseChatModel, LanguageModelInput
from langchain_core.messages import (
    AIMessage,
    AIMessageChunk,
    BaseMessage,
    HumanMessage,
    SystemMessage,
    ToolMessage,
)
from langchain_core.runnables import Runnable
from langchain_core.utils.function_calling import convert_to_openai_tool

from langfusion.graph import DEPTH_HEADER, FusionContext, FusionGraph, FusionResult, ModelFactory
from langfusion.graph.errors import MissingAPIKeyError, short
from langfusion.graph.models import call_deadline
from langfusion.graph.schema import Usage
from langfusion.tools import FusionTool
from langfusion.tools.api.alias import alias_events
from langfusion.tools.api.deliberate import Deliberated, deliberate
from langfusion.tools.api.errors import ApiError, upstream_failure
from langfusion.tools.api.events import (
    Event,
    Finished,
    FusionFinished,
    FusionStarted,
    Outcome,
    Tally,
    Text,
    call_view,
    citations_of,
)
from langfusion.tools.api.messages import TOOL_NAME, FusionRecord
from langfusion.tools.api.request import Plan, Turn

__all__ = ["MAX_STEPS", "Plan", "Runner"]

# Calls of the calling model per request: a fusion, a capped second call, an answer.
MAX_STEPS = 4
# Deadline of each call of the calling model (the pipeline's calls have their own).
ANSWER_TIMEOUT_S = 180.0


@functools.cache
def fusion_tool_spec() -> dict[str, Any]:
    """The ``fusion`` function tool as the calling model is offered it (``FusionTool``'s)."""
    # The tool's context is never run here: the server runs the pipeline itself.
    unused = FusionContext(analysis_models=["unused"], model="unused")
    return convert_to_openai_tool(FusionTool(context=unused))


def capped_result() -> str:
    """The tool result of a fusion call beyond the first in a request."""
    return json.dumps(
        {
            "status": "error",
            "error": "Fusion already ran for this request; answer from its analysis.",
            "failure_reason": "fusion_invocation_capped",
        }
    )


def unexpected_result(exc: BaseException) -> str:
    """The tool result of a fusion run that failed in a way nobody foresaw."""
    return json.dumps(
        {
            "status": "error",
            "error": f"The fusion run failed: {short(f'{type(exc).__name__}: {exc}')}",
            "failure_reason": "unexpected_error",
        }
    )


class Runner:
    """Runs requests: plain completions, the server tool's loop and the alias.

    Args:
        factory: Builds every model (the calling model and the pipeline's).
        graph: The fusion pipeline.
        defaults: ``FusionContext`` parameters every fusion starts from
            (``langfusion serve``'s options); a request's own override them.
    """

    def __init__(
        self, factory: ModelFactory, graph: FusionGraph, defaults: Mapping[str, Any]
    ) -> None:
        self.factory = factory
        self.graph = graph
        self.defaults = dict(defaults)

    def plan(self, turn: Turn) -> Plan:
        """Check a request before anything is sent back: its fusion settings and its model.

        Raises:
            ApiError: 400 for invalid fusion parameters or a nested alias, 404
                for a model that cannot be built, 500 when the server has no key for it.
        """
        fusion = turn.fusion
        context = None
        if fusion is not None:
            settings = {**self.defaults, **fusion.settings}
            if fusion.alias:
                if turn.depth >= 1:
                    raise ApiError(
                        400,
                        "recursion_blocked: this request comes from inside a fusion run "
                        f"(fusion depth {turn.depth}); nested deliberation is refused.",
                    )
            else:
                settings = {**self.defaults, "model": turn.model, **fusion.settings}
            settings["synthesize"] = False
            settings["stream_panel_tokens"] = turn.api == "responses" and turn.stream
            try:
                context = FusionContext.from_parameters(settings, owner="fusion")
            except (ValueError, TypeError) as exc:
                raise ApiError(400, f"fusion parameters: {exc}") from None
        model = None if fusion is not None and fusion.alias else self._model(turn)
        return Plan(turn=turn, model=model, context=context)

    def _model(self, turn: Turn) -> BaseChatModel:
        settings: dict[str, Any] = {
            "role": "synthesis",
            "timeout": ANSWER_TIMEOUT_S,
            "max_retries": int(self.defaults.get("max_retries", 2)),
            **turn.settings,
        }
        if turn.depth:
            settings["headers"] = {DEPTH_HEADER: str(turn.depth)}
        try:
            return self.factory(turn.model, **settings)
        except MissingAPIKeyError as exc:
            raise upstream_failure(exc, turn.model) from None
        except ValueError as exc:
            raise ApiError(404, f"model {turn.model!r} is not served here: {exc}") from None

    def run(self, plan: Plan) -> AsyncIterator[Event]:
        """Run a planned request; its events end with ``Finished``."""
        fusion = plan.turn.fusion
        if fusion is not None and fusion.alias:
            return alias_events(self.graph, plan)
        return self._loop(plan)

    # The server tool's loop, and plain completions (a loop without the tool).

    def _bound(
        self, plan: Plan, tools: list[dict[str, Any]], choice: object
    ) -> Runnable[LanguageModelInput, BaseMessage]:
        assert plan.model is not None
        bound: Runnable[LanguageModelInput, BaseMessage] = plan.model
        options = dict(plan.turn.options)
        parallel = options.pop("parallel_tool_calls", None)
        if tools:
            kwargs: dict[str, Any] = {"tool_choice": choice} if choice is not None else {}
            if parallel is not None:
                kwargs["parallel_tool_calls"] = parallel
            bound = plan.model.bind_tools(tools, **kwargs)
        return bound.bind(**options) if options else bound

    async def _step(
        self, bound: Runnable[LanguageModelInput, BaseMessage], plan: Plan,
        messages: list[BaseMessage], tally: Tally,
    ) -> AsyncIterator[Text | AIMessage]:  # fmt: skip
        slug = plan.turn.model
        try:
            async with call_deadline(ANSWER_TIMEOUT_S) as call:
                if plan.turn.stream:
                    full: AIMessageChunk | None = None
                    async for chunk in bound.astream(messages):
                        if not isinstance(chunk, AIMessageChunk):
                            continue
                        if chunk.text:
                            yield Text(chunk.text)
                        full = chunk if full is None else full + chunk
                    reply = AIMessage(
                        content=full.content if full else "",
                        tool_calls=full.tool_calls if full else [],
                        usage_metadata=full.usage_metadata if full else None,
                        response_metadata=full.response_metadata if full else {},
                        additional_kwargs=full.additional_kwargs if full else {},
                    )
                else:
                    message = await bound.ainvoke(messages)
                    reply = message if isinstance(message, AIMessage) else AIMessage(message.text)
                    if reply.text:
                        yield Text(reply.text)
        except ApiError:
            raise
        except Exception as exc:  # a failed call of the answering model is the request's error
            raise upstream_failure(exc, slug) from exc
        usage = Usage.from_metadata(reply.usage_metadata)
        tally.add(Usage.with_cost(usage, call.cost))
        yield reply

    async def _loop(self, plan: Plan) -> AsyncIterator[Event]:
        turn = plan.turn
        offered = plan.context is not None
        tools = [fusion_tool_spec(), *turn.tools] if offered else list(turn.tools)
        forced = turn.fusion is not None and turn.fusion.forced
        choice: object = (
            {"type": "function", "function": {"name": TOOL_NAME}} if forced else (turn.tool_choice)
        )
        after_fusion = "auto" if forced or turn.tool_choice == "required" else turn.tool_choice
        messages = list(turn.messages)
        tally = Tally()
        text: list[str] = []
        records: list[FusionRecord] = []
        reply = AIMessage("")
        for step in range(MAX_STEPS):
            last = step == MAX_STEPS - 1
            bound = self._bound(plan, tools, "none" if last and tools else choice)
            async for item in self._step(bound, plan, messages, tally):
                if isinstance(item, Text):
                    text.append(item.text)
                    yield item
                else:
                    reply = item
            calls = list(reply.tool_calls)
            fusion_calls = [c for c in calls if offered and c["name"] == TOOL_NAME]
            client_calls = [c for c in calls if c not in fusion_calls]
            if not fusion_calls:
                break
            messages.append(reply)
            for call in fusion_calls:
                async for event in self._fusion_call(plan, call, len(records), tally):
                    if isinstance(event, FusionFinished):
                        records.append(event.record)
                        messages.append(
                            ToolMessage(event.record.result_json, tool_call_id=event.record.call_id)
                        )
                    yield event
            if client_calls:
                reply = AIMessage("", tool_calls=client_calls)
                break
            choice = after_fusion
        client_calls = [c for c in reply.tool_calls if not (offered and c["name"] == TOOL_NAME)]
        metadata = reply.response_metadata or {}
        finish = str(metadata.get("finish_reason") or "stop")
        if client_calls:
            finish = "tool_calls"
        elif finish == "tool_calls":
            finish = "stop"
        citations = [c for r in records for c in citations_of(r.result)]
        for annotation in reply.additional_kwargs.get("annotations") or []:
            cited = annotation.get("url_citation") if isinstance(annotation, dict) else None
            if isinstance(cited, dict) and cited.get("url"):
                citations.append({"url": cited["url"], "title": cited.get("title") or cited["url"]})
        yield Finished(
            Outcome(
                text="".join(text),
                tool_calls=[call_view(c) for c in client_calls],
                finish_reason=finish,
                model=str(metadata.get("model_name") or turn.model),
                usage=tally,
                records=records,
                citations=list({c["url"]: c for c in citations}.values()),
                fusion=offered,
            )
        )

    async def _fusion_call(
        self, plan: Plan, call: Mapping[str, Any], earlier: int, tally: Tally
    ) -> AsyncIterator[Event]:
        """One ``fusion`` call of the calling model: run, reused from the record, or capped."""
        turn = plan.turn
        call_id = str(call.get("id") or f"call_{uuid.uuid4().hex[:24]}")
        args = call.get("args") or {}
        arguments = json.dumps(args, ensure_ascii=False)
        tally.requested += 1
        yield FusionStarted(call_id, arguments)
        if earlier:
            yield FusionFinished(FusionRecord(call_id, arguments, capped_result(), None, False))
            return
        if turn.recorded is not None and turn.recorded.result is not None:
            reused = turn.recorded
            yield FusionFinished(
                FusionRecord(call_id, arguments, reused.result_json, reused.result, False)
            )
            return
        prompt = args.get("prompt") if isinstance(args, dict) else None
        result: FusionResult | None = None
        if not isinstance(prompt, str) or not prompt.strip():
            result = FusionResult.failure(
                "The fusion tool needs one argument, `prompt`: a non-empty string with the "
                "full question. Call it again with that argument.",
                "invalid_request",
            )
            result_json = result.to_json()
        else:
            asked = [m for m in turn.messages if isinstance(m, SystemMessage)]
            inputs = {"messages": [*asked, HumanMessage(prompt)], "depth": turn.depth}
            assert plan.context is not None
            try:
                async for event in deliberate(self.graph, inputs, plan.context):
                    if isinstance(event, Deliberated):
                        result = event.result
                    else:
                        yield event
            except ApiError:
                raise
            except Exception as exc:  # inside the tool a failure is a tool result, as everywhere
                result_json = unexpected_result(exc)
            if result is not None:
                result_json = result.to_json()
                tally.add(result.usage.total)
            tally.executed += 1
        yield FusionFinished(FusionRecord(call_id, arguments, result_json, result, True))
