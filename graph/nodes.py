"""The pipeline's nodes and routers: prepare, analyze, tally, judge, synthesize, report."""

from __future__ import annotations

import functools
import json
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage
from langchain_core.tools import BaseTool
from langgraph.config import get_config, get_stream_writer
from langgraph.errors import NodeError
from langgraph.graph import END
from langgraph.runtime import Runtime
from langgraph.types import Command, Send

from langfusion.graph.caller import bind_options, take_inputs
from langfusion.graph.citations import credited, merged
from langfusion.graph.context import FusionContext
from langfusion.graph.conversation import (
    conversation,
    history,
    instructions,
    message_text,
    question,
    since_question,
    without_instructions,
)
from langfusion.graph.depth import Role, active, child_config, run_depth
from langfusion.graph.errors import (
    EmptyCompletionError,
    classify,
)
from langfusion.graph.judge import Panel, judge_panel
from langfusion.graph.models import (
    DEPTH_HEADER,
    ModelFactory,
    ModelTraits,
    call_deadline,
    cancellable,
    offered_server_tools,
)
from langfusion.graph.outcome import in_panel_order, run_result, too_few
from langfusion.graph.panel import (
    answer_panel,
    failed,
    plain_prompts,
)
from langfusion.graph.quorum import CutAfterQuorumError, panel_round
from langfusion.graph.refusal import refusal_of
from langfusion.graph.schema import (
    Analysis,
    Citation,
    FailedModel,
    FusionResult,
    PanelResponse,
    Usage,
)
from langfusion.graph.spend import priced, trace_cost
from langfusion.graph.state import (
    FRESH_RUN,
    FusionState,
    PanelTask,
    all_loaded,
    loaded,
    plain,
    plains,
)
from langfusion.graph.synthesis_prompt import synthesis_messages

WebTools = Sequence[BaseTool] | Callable[[], Sequence[BaseTool]]


@dataclass(frozen=True)
class Nodes:
    """The nodes, closed over what every run shares: the model factory and the web tools.

    Nothing here changes while runs go: per-run values travel in the state,
    the ``Send`` payloads and the runtime context.
    """

    factory: ModelFactory
    offered_tools: WebTools
    cache_keys: bool = False

    @functools.cached_property
    def web_tools(self) -> tuple[BaseTool, ...]:
        """The web tools, resolved once, the first time a call may use them."""
        tools = self.offered_tools
        return tuple(tools() if callable(tools) else tools)

    def model(self, ctx: FusionContext, slug: str, role: Role, depth: int) -> BaseChatModel:
        """The chat model for ``slug`` in ``role``, with this run's settings."""
        headers = {DEPTH_HEADER: str(depth + 1)}
        settings: dict[str, Any] = {"role": role, "headers": headers, "reasoning": ctx.reasoning}
        settings["max_retries"] = ctx.max_retries
        if role == "panel":
            settings |= {
                "temperature": ctx.temperature,
                "max_tokens": ctx.max_completion_tokens,
                "timeout": ctx.timeout_s,
            }
            if ctx.stream_panel_tokens:
                settings["stream"] = True
        elif role == "judge":
            settings |= {
                "temperature": 0.0,
                "max_tokens": ctx.max_completion_tokens,
                "timeout": ctx.judge_timeout_s,
            }
        else:
            settings |= {"timeout": ctx.synthesis_timeout_s}
        return cancellable(self.factory(slug, **settings))  # whatever factory built it

    async def prepare(self, state: FusionState, runtime: Runtime[FusionContext]) -> dict[str, Any]:
        """Start a run: fix its depth and id, refuse what cannot run, build the models."""
        ctx = _context(runtime)
        config = get_config()
        fusion_id = str((config.get("metadata") or {}).get("fusion_id") or uuid.uuid4())
        earlier, taken, invalid = take_inputs(state)
        update: dict[str, Any] = {"fusion_id": fusion_id, **FRESH_RUN, **taken}
        if invalid is not None:
            return update | {"result": plain(FusionResult.failure(invalid, "invalid_request"))}
        depth = update["depth"] = run_depth(state.get("depth", 0), config)
        asked = update["question"] = question(state["messages"])
        update["instructions"] = instructions(state["messages"])
        refusal = await refusal_of(
            self.factory,
            ctx,
            asked,
            depth,
            messages=state["messages"],
            synthesis_max_tokens=(update.get("synthesis_binding") or {}).get("max_tokens"),
            reusing=earlier is not None,
        )
        if refusal is None and earlier is not None and earlier.status != "ok":
            refusal = FusionResult.failure(
                "reuse must be the ok result of an earlier run on the same question.",
                "invalid_request",
            )
        if refusal is None and earlier is not None:
            get_stream_writer()({"event": "analysis_reused", "model": ctx.judge})
        if refusal is not None:
            update |= {"result": plain(refusal), "answer": ""}
        return update

    async def fan_out(
        self, state: FusionState, runtime: Runtime[FusionContext]
    ) -> list[Send] | str:
        """Send the question to every panel model at once, or end a refused run."""
        if state.get("result") is not None:
            return END
        ctx = _context(runtime)
        if state.get("reusing"):
            return _after_judge(ctx)
        settings = (
            json.dumps(
                [
                    ctx.temperature,
                    ctx.max_completion_tokens,
                    ctx.reasoning,
                    ctx.max_tool_calls if ctx.web_tools else 0,
                ]
            )
            if self.cache_keys
            else ""
        )
        asked = without_instructions(conversation(state["messages"]))
        round_key = uuid.uuid4().hex
        return [
            Send(
                "analyze",
                PanelTask(
                    slug=slug,
                    messages=asked,
                    instructions=state.get("instructions"),
                    depth=state.get("depth", 0),
                    fusion_id=state.get("fusion_id", ""),
                    settings=settings,
                    round=round_key,
                ),
            )
            for slug in ctx.panel
        ]

    async def analyze(self, task: PanelTask, runtime: Runtime[FusionContext]) -> dict[str, Any]:
        """One panel model answers before its deadline; a fallback takes a failed one's place.

        With ``quorum_grace_s``, a model still running once the quorum is in
        and its grace has ended is cut (graph/quorum.py).
        """
        ctx = _context(runtime)
        fallbacks = [f for f in ctx.fallback_models or () if f not in ctx.panel]
        shared = panel_round(
            task["round"], needed=ctx.min_responses, grace_s=ctx.quorum_grace_s, fallbacks=fallbacks
        )
        started = time.monotonic()
        slug, failures = task["slug"], list[FailedModel]()
        while True:
            left = ctx.timeout_s - (time.monotonic() - started)
            try:
                response, cited = await shared.unless_cut(self._answer(ctx, task, slug, left))
            except Exception as exc:
                replacement = None
                if not isinstance(exc, CutAfterQuorumError) and ctx.timeout_s > (
                    time.monotonic() - started
                ):
                    replacement = shared.next_fallback()
                if replacement is None and not failures:
                    raise  # recorded by record_panel_failure, as any failed branch
                failures.append(failed(slug, exc, replaced_by=replacement))
                if replacement is None:
                    return {"failed_models": plains(failures)}
                slug = replacement
                continue
            shared.answered_one()
            if failures:
                response = response.model_copy(update={"fallback_for": failures[-1].model})
            return {
                "responses": [plain(response)],
                "failed_models": plains(failures),
                "citations": plains(credited(cited, slug)),
            }

    async def _answer(
        self, ctx: FusionContext, task: PanelTask, slug: str, deadline_s: float
    ) -> tuple[PanelResponse, list[Citation]]:
        """``slug``'s answer to the panel question, with the web tools, within ``deadline_s``."""
        get_stream_writer()({"event": "panel_started", "model": slug})
        model = self.model(ctx, slug, "panel", task["depth"])
        tools = self.web_tools if ctx.web_tools and ModelTraits.of(model).takes_tools else ()
        return await answer_panel(model, ctx, task, slug, deadline_s, tools)

    def record_panel_failure(self, task: PanelTask, error: NodeError) -> Command[str]:
        """A panel branch failed: record why and go on to the tally."""
        failure = failed(task["slug"], error.error)
        return Command(update={"failed_models": [plain(failure)]}, goto="tally")

    async def tally(self, state: FusionState, runtime: Runtime[FusionContext]) -> dict[str, Any]:
        """Count the surviving answers; with fewer than ``min_responses``, end with an error."""
        ctx = _context(runtime)
        responses = in_panel_order(all_loaded(PanelResponse, state.get("responses")), ctx.panel)
        if len(responses) >= ctx.min_responses:
            return {}
        failed = in_panel_order(all_loaded(FailedModel, state.get("failed_models")), ctx.panel)
        result = too_few(responses, failed, len(ctx.panel), ctx.min_responses)
        return {"result": plain(result), "answer": ""}

    async def after_panel(self, state: FusionState) -> str:
        """Judge the answers, or end a run that has nothing to judge."""
        return END if state.get("result") is not None else "judge"

    async def judge(self, state: FusionState, runtime: Runtime[FusionContext]) -> dict[str, Any]:
        """Compare the surviving answers under neutral labels; map labels back to slugs."""
        ctx = _context(runtime)
        writer = get_stream_writer()
        writer({"event": "judge_started", "model": ctx.judge})
        responses = all_loaded(PanelResponse, state.get("responses"))
        panel = Panel.shuffled(responses, state.get("fusion_id", ""))
        depth = state.get("depth", 0)
        model = self.model(ctx, ctx.judge, "judge", depth)
        config = child_config(depth, state.get("fusion_id", ""), "judge", ctx.judge, nostream=True)
        on_server = offered_server_tools(
            model, enabled=ctx.web_tools, max_tool_calls=ctx.max_tool_calls
        )
        tools = self.web_tools if ModelTraits.of(model).takes_tools and not on_server else ()
        with active(depth):
            async with call_deadline(ctx.judge_timeout_s) as call:
                judged = await judge_panel(
                    model,
                    panel,
                    state.get("question") or "",
                    config,
                    instructions=state.get("instructions"),
                    # Unset: on where the endpoint runs the web tools in the judge's call.
                    research=(
                        bool(on_server) if ctx.judge_web_tools is None else ctx.judge_web_tools
                    )
                    and bool(tools or on_server),
                    tools=tools,
                    server_tools=on_server,
                    max_tool_calls=ctx.max_tool_calls,
                )
        writer(
            {
                "event": "judge_finished",
                "model": ctx.judge,
                "ok": judged.analysis is not None,
                "failure_reason": judged.failure,
            }
        )
        usage = Usage.with_cost(judged.usage, call.cost)
        return {
            "analysis": plain(judged.analysis) if judged.analysis else None,
            "analysis_meta": plain(judged.meta),
            "judge_failure": judged.failure,
            "judge_usage": plain(usage) if usage else None,
            "citations": plains(credited(judged.citations, ctx.judge)),
        }

    def record_judge_failure(
        self, state: FusionState, error: NodeError, runtime: Runtime[FusionContext]
    ) -> Command[str]:
        """The judge call failed: go on without an analysis."""
        _, message = classify(error.error)
        get_stream_writer()(
            {
                "event": "judge_finished",
                "ok": False,
                "failure_reason": "judge_upstream_error",
                "error": message,
            }
        )
        panel = Panel.shuffled(all_loaded(PanelResponse, state.get("responses")), "")
        return Command(
            update={
                "analysis": None,
                "analysis_meta": plain(panel.meta()),
                "judge_failure": "judge_upstream_error",
            },
            goto=_after_judge(_context(runtime)),
        )

    async def after_judge(self, state: FusionState, runtime: Runtime[FusionContext]) -> str:
        """Write the answer, or, for a caller that writes its own, report the analysis."""
        return _after_judge(_context(runtime))

    async def synthesize(
        self, state: FusionState, runtime: Runtime[FusionContext]
    ) -> dict[str, Any]:
        """Write the final answer from the analysis (or the raw answers); no web tools."""
        ctx = _context(runtime)
        get_stream_writer()({"event": "synthesis_started", "model": ctx.synthesizer})
        depth = state.get("depth", 0)
        synthesizer = self.model(ctx, ctx.synthesizer, "synthesis", depth)
        model = bind_options(synthesizer, state.get("synthesis_binding"))
        messages = synthesis_messages(
            state.get("question") or "",
            state.get("instructions"),
            history(state["messages"]),
            loaded(Analysis, state.get("analysis")),
            all_loaded(PanelResponse, state.get("responses")),
            merged(all_loaded(Citation, state.get("citations"))),
            plain=plain_prompts(synthesizer),
        )
        messages += since_question(state["messages"])
        config = child_config(
            depth, state.get("fusion_id", ""), "synthesis", ctx.synthesizer, nostream=False
        )
        with active(depth):
            async with call_deadline(ctx.synthesis_timeout_s) as call:
                reply = await model.ainvoke(messages, config)
        answer = message_text(reply)
        tool_calls = getattr(reply, "tool_calls", None) or []
        if not answer.strip() and not tool_calls:
            raise EmptyCompletionError("the synthesis model returned an empty answer")
        usage = Usage.with_cost(
            Usage.from_metadata(getattr(reply, "usage_metadata", None)), call.cost
        )
        update: dict[str, Any] = {
            "answer": answer,
            "answer_truncated": reply.response_metadata.get("finish_reason") == "length",
            "synthesis_usage": plain(usage) if usage else None,
        }
        # Under the streamed reply's own id: the "messages" stream has carried it
        # token by token already and must not repeat it whole.
        update["messages"] = [AIMessage(answer, id=reply.id, tool_calls=tool_calls)]
        return update

    def record_synthesis_failure(self, state: FusionState, error: NodeError) -> Command[str]:
        """The synthesis failed or came back empty: keep the analysis and the answers."""
        reason, message = classify(error.error)
        get_stream_writer()({"event": "synthesis_failed", "reason": reason, "error": message})
        return Command(update={"answer": "", "synthesis_failure": message}, goto="report")

    async def report(self, state: FusionState, runtime: Runtime[FusionContext]) -> dict[str, Any]:
        """Assemble the SPEC result of a run that reached the judge, its calls priced."""
        ctx = _context(runtime)
        result = run_result(state, ctx.panel, ctx.judge)
        reused = bool(state.get("reusing"))
        result = await priced(self.factory, result, synthesizer=ctx.synthesizer, reused=reused)
        trace_cost(result)
        return {"result": plain(result), "answer": state.get("answer") or ""}


def _after_judge(ctx: FusionContext) -> str:
    return "synthesize" if ctx.synthesize else "report"


def _context(runtime: Runtime[FusionContext]) -> FusionContext:
    ctx = runtime.context
    return ctx if isinstance(ctx, FusionContext) else FusionContext()
