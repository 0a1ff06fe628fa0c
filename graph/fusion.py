"""The fusion pipeline: a parallel panel, a judge, a synthesis."""

from __future__ import annotations

import asyncio
import functools
import json
import random
import string
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any, Literal, TypeVar

import openai
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, AnyMessage, BaseMessage, HumanMessage, SystemMessage
from langchain_core.runnables import RunnableConfig
from langchain_core.tools import BaseTool
from langgraph.cache.base import BaseCache
from langgraph.config import get_config, get_stream_writer
from langgraph.constants import TAG_NOSTREAM
from langgraph.errors import NodeError
from langgraph.graph import END, START, StateGraph
from langgraph.graph.state import CompiledStateGraph
from langgraph.runtime import Runtime
from langgraph.types import CachePolicy, Checkpointer, Command, RetryPolicy, Send
from pydantic import ValidationError

from langfusion.graph.context import FusionContext
from langfusion.graph.errors import (
    EmptyCompletionError,
    MissingAPIKeyError,
    PanelDeadlineError,
    RateLimitedError,
    classify,
    is_transient,
    retry_after_s,
)
from langfusion.graph.local import LocalModelError
from langfusion.graph.models import (
    DEPTH_HEADER,
    SCHEMA_CAPS_KEY,
    STRUCTURED_METHOD_KEY,
    TOOLS_KEY,
    ModelFactory,
    default_registry,
)
from langfusion.graph.prompts import (
    JUDGE_NOTES,
    JUDGE_RESPONSE,
    JUDGE_SYSTEM,
    JUDGE_USER,
    JUDGE_VERIFY,
    PANEL_SYSTEM,
    SYNTHESIS_SYSTEM,
    SYNTHESIS_USER,
    TRUNCATED,
)
from langfusion.graph.schema import (
    FailedModel,
    FusionResult,
    JudgeFailure,
    JudgeVerdict,
    PanelResponse,
    RunUsage,
    Usage,
)
from langfusion.graph.state import FusionInput, FusionOutput, FusionState, PanelTask
from langfusion.graph.toolloop import answer_with_tools

Role = Literal["panel", "judge", "synthesis"]
T = TypeVar("T", PanelResponse, FailedModel)

# Depth of the fusion run whose node is executing in this context. Anything
# started from inside a node (a model, a tool, a nested graph) inherits it,
# which is how a nested fusion finds out that it is nested.
ACTIVE_DEPTH: ContextVar[int | None] = ContextVar("langfusion_active_depth", default=None)

# What one panel answer may cost the judge: longer answers are cut in the middle.
MAX_ANSWER_CHARS_FOR_JUDGE = 24_000
_STRUCTURED_METHODS = ("json_schema", "function_calling", "json_mode")

WebTools = Sequence[BaseTool] | Callable[[], Sequence[BaseTool]]


def _default_web_tools() -> Sequence[BaseTool]:
    from langfusion.tools.web import web_tools

    tools: Sequence[BaseTool] = web_tools()
    return tools


class _Pipeline:
    """The nodes, closed over the model factory and the web tools."""

    def __init__(self, factory: ModelFactory, web_tools: WebTools) -> None:
        self.factory = factory
        self._web_tools = web_tools
        self._resolved_tools: Sequence[BaseTool] | None = None
        # When each panel call's first attempt started, so that retries share
        # one deadline (a node timeout would count per attempt).
        self._first_attempt: dict[tuple[str, str], float] = {}

    @property
    def web_tools(self) -> Sequence[BaseTool]:
        if self._resolved_tools is None:
            tools = self._web_tools
            self._resolved_tools = tuple(tools() if callable(tools) else tools)
        return self._resolved_tools

    def model(self, ctx: FusionContext, slug: str, role: Role, depth: int) -> BaseChatModel:
        settings: dict[str, Any] = {
            "role": role,
            "headers": {DEPTH_HEADER: str(depth + 1)},
            "reasoning": ctx.reasoning,
        }
        if role == "panel":
            settings |= {
                "temperature": ctx.temperature,
                "max_tokens": ctx.max_completion_tokens,
                "timeout": ctx.timeout_s,
            }
        elif role == "judge":
            settings |= {"temperature": 0.0, "timeout": ctx.judge_timeout_s}
        else:
            settings |= {"timeout": ctx.synthesis_timeout_s}
        return self.factory(slug, **settings)

    async def prepare(self, state: FusionState, runtime: Runtime[FusionContext]) -> dict[str, Any]:
        """Start a run: fix its depth and id, refuse what cannot run, build the models."""
        ctx = _context(runtime)
        parent = ACTIVE_DEPTH.get()
        config = get_config()
        depth = max(
            state.get("depth", 0),
            0 if parent is None else parent + 1,
            _header_depth(config.get("configurable") or {}),
        )
        metadata = config.get("metadata") or {}
        fusion_id = str(metadata.get("fusion_id") or uuid.uuid4())
        update: dict[str, Any] = {
            "depth": depth,
            "fusion_id": fusion_id,
            "judge_model": ctx.judge,
            "error": None,
            "responses": None,
            "failed_models": None,
            "analysis": None,
            "judge_failure": None,
            "judge_usage": None,
            "synthesis_usage": None,
            "synthesis_failure": None,
            "answer": "",
        }
        if depth >= 1:
            update["error"] = FusionResult.failure(
                "Fusion was invoked from inside another fusion run; nested deliberation is "
                "refused. Answer without it.",
                "recursion_blocked",
            )
            return update
        if _question(state["messages"]) is None:
            update["error"] = FusionResult.failure(
                "There is no question to deliberate on: the last human message is missing or "
                "empty. Pass the question as a non-empty human message.",
                "invalid_request",
            )
            return update
        roles: list[tuple[str, Role]] = [(slug, "panel") for slug in ctx.panel]
        roles.append((ctx.judge, "judge"))
        if ctx.synthesize:
            roles.append((ctx.synthesizer, "synthesis"))
        try:
            for slug, role in roles:
                self.model(ctx, slug, role, depth)
        except MissingAPIKeyError as exc:
            update["error"] = FusionResult.failure(str(exc), "missing_api_key")
        except ValueError as exc:
            update["error"] = FusionResult.failure(classify(exc)[1], "invalid_request")
        except LocalModelError as exc:
            update["error"] = FusionResult.failure(str(exc), "local_model_unavailable")
        return update

    async def fan_out(
        self, state: FusionState, runtime: Runtime[FusionContext]
    ) -> list[Send] | str:
        """Send the question to every panel model at once, unless the run was refused."""
        if state.get("error") is not None:
            return "report"
        ctx = _context(runtime)
        settings = json.dumps(
            [
                ctx.temperature,
                ctx.max_completion_tokens,
                ctx.reasoning,
                ctx.max_tool_calls if ctx.web_tools else 0,
            ]
        )
        return [
            Send(
                "analyze",
                PanelTask(
                    slug=slug,
                    messages=_conversation(state["messages"]),
                    depth=state.get("depth", 0),
                    fusion_id=state.get("fusion_id", ""),
                    settings=settings,
                ),
            )
            for slug in ctx.panel
        ]

    async def analyze(self, task: PanelTask, runtime: Runtime[FusionContext]) -> dict[str, Any]:
        """One panel model answers the question, with the web tools, before its deadline."""
        ctx = _context(runtime)
        slug = task["slug"]
        started_at = self._first_attempt.setdefault((task["fusion_id"], slug), time.monotonic())
        deadline = started_at + ctx.timeout_s
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise PanelDeadlineError(f"no answer within timeout_s={ctx.timeout_s:g}s")
        writer = get_stream_writer()
        writer({"event": "panel_started", "model": slug})
        model = self.model(ctx, slug, "panel", task["depth"])
        messages = [SystemMessage(PANEL_SYSTEM), *task["messages"]]
        started = time.monotonic()
        with _active(task["depth"]):
            try:
                async with asyncio.timeout(remaining):
                    outcome = await answer_with_tools(
                        model,
                        messages,
                        self.web_tools if ctx.web_tools and _takes_tools(model) else (),
                        max_tool_calls=ctx.max_tool_calls,
                        config=_child_config(
                            task["depth"], task["fusion_id"], "panel", slug, nostream=True
                        ),
                    )
            except TimeoutError as exc:
                raise PanelDeadlineError(f"no answer within timeout_s={ctx.timeout_s:g}s") from exc
            except (openai.RateLimitError, openai.InternalServerError) as exc:
                await _wait_retry_after(exc, deadline)
                raise
        content = _text(outcome.message)
        if not content.strip():
            raise EmptyCompletionError("the model returned an empty answer")
        self._first_attempt.pop((task["fusion_id"], slug), None)
        elapsed = time.monotonic() - started
        response = PanelResponse(
            model=slug,
            content=content,
            usage=outcome.usage,
            latency_s=round(elapsed, 3),
            tool_calls=outcome.tool_calls,
        )
        writer(
            {
                "event": "panel_finished",
                "model": slug,
                "seconds": response.latency_s,
                "tokens": outcome.usage.output_tokens if outcome.usage else None,
            }
        )
        return {"responses": [response]}

    def record_panel_failure(self, task: PanelTask, error: NodeError) -> Command[str]:
        """A panel branch failed after its retries: record why and go on to the judge."""
        self._first_attempt.pop((task["fusion_id"], task["slug"]), None)
        reason, message = classify(error.error)
        get_stream_writer()(
            {"event": "panel_failed", "model": task["slug"], "reason": reason, "error": message}
        )
        failure = FailedModel(model=task["slug"], error=message, failure_reason=reason)
        return Command(update={"failed_models": [failure]}, goto="judge")

    async def judge(self, state: FusionState, runtime: Runtime[FusionContext]) -> dict[str, Any]:
        """Compare the surviving answers under neutral labels; map labels back to slugs."""
        ctx = _context(runtime)
        if state.get("error") is not None:
            return {}
        responses = state.get("responses") or []
        if not responses:
            return {"error": _nothing_usable(state.get("failed_models") or [])}
        writer = get_stream_writer()
        writer({"event": "judge_started", "model": ctx.judge})
        shuffled = list(responses)
        random.Random(state.get("fusion_id", "")).shuffle(shuffled)
        labels = {
            f"Response {letter}": r.model
            for letter, r in zip(string.ascii_uppercase, shuffled, strict=False)
        }
        prompt = JUDGE_USER.format(
            question=_question(state["messages"]),
            responses="\n\n".join(
                JUDGE_RESPONSE.format(label=label, content=_fit(r.content))
                for label, r in zip(labels, shuffled, strict=True)
            ),
        )
        depth = state.get("depth", 0)
        model = self.model(ctx, ctx.judge, "judge", depth)
        config = _child_config(depth, state.get("fusion_id", ""), "judge", ctx.judge, nostream=True)
        messages: list[BaseMessage] = [SystemMessage(JUDGE_SYSTEM), HumanMessage(prompt)]
        research_usage: Usage | None = None
        with _active(depth):
            async with asyncio.timeout(ctx.judge_timeout_s):
                if ctx.judge_web_tools and self.web_tools and _takes_tools(model):
                    notes = await answer_with_tools(
                        model,
                        [SystemMessage(JUDGE_SYSTEM), HumanMessage(prompt + JUDGE_VERIFY)],
                        self.web_tools,
                        max_tool_calls=ctx.max_tool_calls,
                        config=config,
                    )
                    research_usage = notes.usage
                    messages.append(
                        HumanMessage(JUDGE_NOTES.format(notes=_text(notes.message) or "(none)"))
                    )
                verdict, usage, failure = await _structured_verdict(model, messages, config)
        if research_usage is not None:
            usage = Usage.total([usage, research_usage])
        writer(
            {
                "event": "judge_finished",
                "model": ctx.judge,
                "ok": verdict is not None,
                "failure_reason": failure,
            }
        )
        return {
            "analysis": verdict.analysis().relabel(labels) if verdict else None,
            "judge_failure": failure,
            "judge_usage": usage,
        }

    def record_judge_failure(self, state: FusionState, error: NodeError) -> Command[str]:
        """The judge call failed after its retries: go on without an analysis."""
        reason, message = classify(error.error)
        get_stream_writer()(
            {
                "event": "judge_finished",
                "model": state.get("judge_model"),
                "ok": False,
                "failure_reason": "judge_upstream_error",
                "error": message,
            }
        )
        return Command(
            update={"analysis": None, "judge_failure": "judge_upstream_error"},
            goto="synthesize",
        )

    async def synthesize(
        self, state: FusionState, runtime: Runtime[FusionContext]
    ) -> dict[str, Any]:
        """Write the final answer from the analysis (or the raw answers); no tools bound."""
        ctx = _context(runtime)
        if not ctx.synthesize or state.get("error") is not None:
            return {}
        get_stream_writer()({"event": "synthesis_started", "model": ctx.synthesizer})
        analysis = state.get("analysis")
        responses = state.get("responses") or []
        prompt = SYNTHESIS_USER.format(
            question=_question(state["messages"]),
            analysis=analysis.model_dump_json(indent=1)
            if analysis
            else "(no analysis: the judge failed; compare the responses yourself)",
            responses="\n\n".join(
                JUDGE_RESPONSE.format(label=r.model, content=_fit(r.content)) for r in responses
            ),
        )
        depth = state.get("depth", 0)
        model = self.model(ctx, ctx.synthesizer, "synthesis", depth)
        messages = [SystemMessage(SYNTHESIS_SYSTEM), *_history(state["messages"])]
        messages.append(HumanMessage(prompt))
        with _active(depth):
            async with asyncio.timeout(ctx.synthesis_timeout_s):
                reply = await model.ainvoke(
                    messages,
                    _child_config(
                        depth,
                        state.get("fusion_id", ""),
                        "synthesis",
                        ctx.synthesizer,
                        nostream=False,
                    ),
                )
        answer = _text(reply)
        update: dict[str, Any] = {
            "answer": answer,
            "synthesis_usage": Usage.from_metadata(getattr(reply, "usage_metadata", None)),
        }
        if answer:
            # Under the streamed reply's own id: the "messages" stream has carried it
            # token by token already and must not repeat it whole.
            update["messages"] = [AIMessage(answer, id=reply.id)]
        return update

    def record_synthesis_failure(self, state: FusionState, error: NodeError) -> Command[str]:
        """The synthesis failed: keep the analysis and the answers, leave the answer empty."""
        reason, message = classify(error.error)
        get_stream_writer()({"event": "synthesis_failed", "reason": reason, "error": message})
        return Command(update={"answer": "", "synthesis_failure": message}, goto="report")

    async def report(self, state: FusionState, runtime: Runtime[FusionContext]) -> dict[str, Any]:
        """Assemble the SPEC result and the answer."""
        ctx = _context(runtime)
        order = ctx.panel
        failed = _in_panel_order(state.get("failed_models") or [], order)
        error = state.get("error")
        if error is not None:
            result = error.model_copy(update={"failed_models": failed or error.failed_models})
            return {"result": result, "answer": ""}
        responses = _in_panel_order(state.get("responses") or [], order)
        panel_usage = Usage.total(r.usage for r in responses)
        judge_usage = state.get("judge_usage")
        synthesis_usage = state.get("synthesis_usage")
        usage = RunUsage(
            panel=panel_usage,
            judge=judge_usage or Usage(),
            synthesis=synthesis_usage or Usage(),
            total=Usage.total([panel_usage, judge_usage, synthesis_usage]),
        )
        answer = state.get("answer") or ""
        failure_reason = state.get("judge_failure")
        if failure_reason is None and state.get("synthesis_failure"):
            failure_reason = "synthesis_failed"
        result = FusionResult(
            status="ok",
            analysis=state.get("analysis"),
            responses=responses,
            failed_models=failed,
            failure_reason=failure_reason,
            judge_model=ctx.judge,
            judge_usage=judge_usage,
            usage=usage,
        )
        return {"result": result, "answer": answer}


def _takes_tools(model: BaseChatModel) -> bool:
    return (model.metadata or {}).get(TOOLS_KEY, True) is not False


def _context(runtime: Runtime[FusionContext]) -> FusionContext:
    ctx = runtime.context
    return ctx if isinstance(ctx, FusionContext) else FusionContext()


@contextmanager
def _active(depth: int) -> Iterator[None]:
    token = ACTIVE_DEPTH.set(depth)
    try:
        yield
    finally:
        ACTIVE_DEPTH.reset(token)


def _header_depth(configurable: dict[str, Any]) -> int:
    """The depth a server was told through ``x-fusion-depth`` (passed as a configurable)."""
    raw = configurable.get(DEPTH_HEADER)
    try:
        return max(0, int(str(raw).strip())) if raw is not None else 0
    except ValueError:
        return 1  # an unreadable depth header is treated as nested: refuse, don't recurse


def panel_cache_key(task: PanelTask) -> str:
    """What makes two panel calls interchangeable: model, conversation and settings."""
    conversation = [(m.type, m.content) for m in task["messages"]]
    return json.dumps([task["slug"], conversation, task["settings"]], sort_keys=True, default=str)


def _child_config(
    depth: int, fusion_id: str, role: Role, slug: str, *, nostream: bool
) -> RunnableConfig:
    return RunnableConfig(
        run_name=slug,
        tags=[f"fusion:{role}", *([TAG_NOSTREAM] if nostream else [])],
        metadata={
            "fusion_role": role,
            "fusion_model": slug,
            "fusion_depth": depth,
            "fusion_id": fusion_id,
        },
    )


async def _wait_retry_after(exc: openai.APIStatusError, deadline: float) -> None:
    wait = retry_after_s(exc)
    if wait is None:
        return
    if wait > deadline - time.monotonic():
        raise RateLimitedError(
            f"rate limited (HTTP {exc.status_code}); the endpoint asked to wait {wait:g}s, "
            "past this call's deadline"
        ) from exc
    await asyncio.sleep(wait)


async def _structured_verdict(
    model: BaseChatModel, messages: list[BaseMessage], config: RunnableConfig
) -> tuple[JudgeVerdict | None, Usage | None, JudgeFailure | None]:
    metadata = model.metadata or {}
    preferred = metadata.get(STRUCTURED_METHOD_KEY)
    methods = [preferred] if preferred else list(_STRUCTURED_METHODS)
    schema = judge_schema(capped=bool(metadata.get(SCHEMA_CAPS_KEY)))
    for index, method in enumerate(methods):
        kwargs: dict[str, Any] = {"strict": True} if method == "json_schema" else {}
        runnable = model.with_structured_output(schema, method=method, include_raw=True, **kwargs)
        try:
            out = await runnable.ainvoke(messages, config)
        except (openai.BadRequestError, openai.UnprocessableEntityError):
            if index + 1 == len(methods):
                raise
            continue
        break
    raw = out.get("raw") if isinstance(out, dict) else None
    parsed = out.get("parsed") if isinstance(out, dict) else out
    usage = Usage.from_metadata(getattr(raw, "usage_metadata", None))
    if parsed is None:
        empty = (
            isinstance(raw, AIMessage)
            and not _text(raw).strip()
            and not (raw.tool_calls or raw.invalid_tool_calls)
        )
        return None, usage, "judge_empty_completion" if empty else "judge_not_valid_json"
    if isinstance(parsed, JudgeVerdict):
        return parsed, usage, None
    try:
        return JudgeVerdict.model_validate(parsed), usage, None
    except ValidationError:
        return None, usage, "judge_schema_mismatch"


@functools.cache
def judge_schema(*, capped: bool = False) -> dict[str, Any]:
    """The judge's JSON schema, inlined and strict-mode ready.

    Args:
        capped: Add ``maxItems``/``maxLength`` caps, for small local models
            whose lists otherwise run on until ``max_tokens``.
    """
    raw = JudgeVerdict.model_json_schema()
    defs = raw.pop("$defs", {})

    def inline(node: Any) -> Any:
        if isinstance(node, dict):
            if "$ref" in node:
                return inline(defs[node["$ref"].rsplit("/", 1)[-1]])
            out = {k: inline(v) for k, v in node.items() if k not in ("title", "default")}
            if out.get("type") == "object":
                out["additionalProperties"] = False
                out["required"] = list(out.get("properties", {}))
            if capped and out.get("type") == "array":
                out["maxItems"] = 3
            if capped and out.get("type") == "string":
                out["maxLength"] = 160
            return out
        if isinstance(node, list):
            return [inline(v) for v in node]
        return node

    schema: dict[str, Any] = inline(raw)
    schema["title"] = "analysis"
    schema["description"] = "The comparison of the labelled responses."
    return schema


def _nothing_usable(failed: list[FailedModel]) -> FusionResult:
    reasons = {f.failure_reason for f in failed}
    code = (
        reasons.pop()
        if len(reasons) == 1 and reasons & {"rate_limited", "insufficient_credits"}
        else "all_panels_failed"
    )
    detail = "; ".join(f"{f.model}: {f.error}" for f in failed) or "no panel model ran"
    return FusionResult.failure(
        f"Every panel model failed, so there is nothing to compare ({detail}). "
        "Answer without the analysis, or retry with other models.",
        code,
        failed_models=failed,
    )


def _question(messages: Sequence[AnyMessage]) -> str | None:
    for message in reversed(messages):
        if isinstance(message, HumanMessage):
            text = _text(message).strip()
            return text or None
    return None


def _conversation(messages: Sequence[AnyMessage]) -> list[AnyMessage]:
    """The conversation up to and including its last human message."""
    for index in range(len(messages) - 1, -1, -1):
        if isinstance(messages[index], HumanMessage):
            return [m for m in messages[: index + 1] if not isinstance(m, SystemMessage)]
    return []


def _history(messages: Sequence[AnyMessage]) -> list[AnyMessage]:
    """Earlier turns, before the last human message."""
    return _conversation(messages)[:-1]


def _text(message: BaseMessage) -> str:
    return message.text if isinstance(message.text, str) else str(message.content)


def _fit(content: str) -> str:
    if len(content) <= MAX_ANSWER_CHARS_FOR_JUDGE:
        return content
    keep = MAX_ANSWER_CHARS_FOR_JUDGE // 2
    omitted = len(content) - 2 * keep
    return content[:keep] + TRUNCATED.format(omitted=omitted) + content[-keep:]


def _in_panel_order(items: list[T], order: Sequence[str]) -> list[T]:
    rank = {slug: index for index, slug in enumerate(order)}
    return sorted(items, key=lambda item: rank.get(item.model, len(rank)))


def build_fusion_graph(
    *,
    model_factory: ModelFactory | None = None,
    checkpointer: Checkpointer = None,
    web_tools: WebTools | None = None,
    retry_policy: RetryPolicy | None = None,
    cache: BaseCache[Any] | None = None,
    cache_ttl_s: int | None = 3600,
    name: str = "fusion",
) -> CompiledStateGraph[FusionState, FusionContext, FusionInput, FusionOutput]:
    """Build the fusion graph.

    Args:
        model_factory: Turns a slug into a chat model; defaults to the
            OpenRouter/OpenAI-compatible registry (``register_model`` adds slugs).
        checkpointer: Makes runs durable: a run that dies mid-panel resumes
            without calling the models that already answered.
        web_tools: Tools for panel calls (a list, or a function returning
            one); defaults to ``web_search`` and ``web_fetch``.
        retry_policy: Retries of each model call; defaults to three attempts
            on 408/409/429, 5xx and connection errors.
        cache: Reuse panel answers for an identical (conversation, model,
            settings), e.g. ``InMemoryCache()`` or ``SqliteCache(path=...)``.
            Off by default: deliberation usually wants fresh answers.
        cache_ttl_s: How long a cached panel answer stays valid.
        name: The graph's name in traces.

    Returns:
        The compiled graph. Invoke it with ``{"messages": [...]}`` and
        ``context=FusionContext(...)``; it returns ``{"result", "answer"}``.
    """
    pipeline = _Pipeline(
        model_factory or default_registry,
        web_tools if web_tools is not None else _default_web_tools,
    )
    retry = retry_policy or RetryPolicy(
        max_attempts=3, initial_interval=0.5, max_interval=8.0, retry_on=is_transient
    )
    builder = StateGraph(
        FusionState,
        context_schema=FusionContext,
        input_schema=FusionInput,
        output_schema=FusionOutput,
    )
    builder.add_node("prepare", pipeline.prepare)
    builder.add_node(  # type: ignore[call-overload]  # stubs miss Send-input nodes
        "analyze",
        pipeline.analyze,
        input_schema=PanelTask,
        retry_policy=retry,
        cache_policy=CachePolicy(key_func=panel_cache_key, ttl=cache_ttl_s) if cache else None,
        error_handler=pipeline.record_panel_failure,
    )
    builder.add_node(
        "judge",
        pipeline.judge,
        retry_policy=retry,
        error_handler=pipeline.record_judge_failure,
    )
    builder.add_node(
        "synthesize",
        pipeline.synthesize,
        retry_policy=retry,
        error_handler=pipeline.record_synthesis_failure,
    )
    builder.add_node("report", pipeline.report)
    builder.add_edge(START, "prepare")
    builder.add_conditional_edges("prepare", pipeline.fan_out, ["analyze", "report"])
    builder.add_edge("analyze", "judge")
    builder.add_edge("judge", "synthesize")
    builder.add_edge("synthesize", "report")
    builder.add_edge("report", END)
    return builder.compile(checkpointer=checkpointer, cache=cache, name=name)


fusion_graph = build_fusion_graph()
"""The default graph (what ``langgraph.json`` serves)."""
