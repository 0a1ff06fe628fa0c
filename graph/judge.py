"""The judge: neutral labels, fencing, the per-run schema, structured output and repair."""

from __future__ import annotations

import copy
import functools
import json
import random
import re
import string
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import json_repair
import openai
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, SystemMessage
from langchain_core.runnables import Runnable, RunnableConfig
from langchain_core.tools import BaseTool
from langchain_core.utils.json_schema import dereference_refs
from pydantic import ValidationError

from langfusion.graph.conversation import message_text
from langfusion.graph.models import BoundedCache, ModelTraits
from langfusion.graph.prompts import (
    ASKER_INSTRUCTIONS,
    JUDGE_NOTES,
    JUDGE_RESPONSE,
    JUDGE_SINGLE,
    JUDGE_SYSTEM,
    JUDGE_USER,
    JUDGE_VERIFY,
    TRUNCATED,
)
from langfusion.graph.scaffolding import cleaned
from langfusion.graph.schema import (
    Analysis,
    AnalysisMeta,
    Citation,
    DroppedCitation,
    JudgeFailure,
    JudgeVerdict,
    PanelResponse,
    Usage,
)
from langfusion.graph.toolloop import answer_with_tools

# What one panel answer may cost the judge: longer answers are cut in the middle.
MAX_ANSWER_CHARS_FOR_JUDGE = 24_000
_STRUCTURED_METHODS = ("json_schema", "function_calling", "json_mode")

# The opening of any tag the judge and synthesis prompts are built from, in any
# case and spacing: untrusted text cannot close its element or open another.
_PROMPT_TAG = re.compile(
    r"<(?=\s*/?\s*(?:response|question|instructions|analysis|citation|verification_notes))",
    re.IGNORECASE,
)


def fence(text: str) -> str:
    """``text`` made safe to place inside a prompt element: its prompt tags are escaped."""
    return _PROMPT_TAG.sub("&lt;", text)


@dataclass(frozen=True)
class Panel:
    """The surviving answers under neutral labels, in a per-run shuffled order."""

    labels: dict[str, str]
    responses: tuple[PanelResponse, ...]

    @classmethod
    def shuffled(cls, responses: Sequence[PanelResponse], seed: str) -> Panel:
        """Label ``responses`` Response A, B, ... in an order drawn from ``seed``."""
        order = list(responses)
        random.Random(seed).shuffle(order)
        labels = {
            f"Response {letter}": r.model
            for letter, r in zip(string.ascii_uppercase, order, strict=False)
        }
        return cls(labels=labels, responses=tuple(order))

    def meta(
        self,
        dropped: Sequence[DroppedCitation] = (),
        repaired: bool = False,
        dropped_entries: int = 0,
    ) -> AnalysisMeta:
        """How the analysis of this panel was made: what was compared, dropped, repaired."""
        return AnalysisMeta(
            responses_compared=len(self.responses),
            degraded="single_response" if len(self.responses) == 1 else None,
            dropped_citations=list(dropped),
            dropped_entries=dropped_entries,
            repaired=repaired,
        )

    def prompt(self, question: str, instructions: str | None = None) -> str:
        """The judge's user prompt: one fenced response element per answer.

        Args:
            question: The question the panel answered.
            instructions: The asker's system instructions, shown as context.
        """
        prompt = JUDGE_USER.format(
            question=fence(question),
            responses="\n\n".join(
                JUDGE_RESPONSE.format(label=label, content=fence(fit(r.content)))
                for label, r in zip(self.labels, self.responses, strict=True)
            ),
        )
        if instructions:
            prompt = ASKER_INSTRUCTIONS.format(instructions=fence(instructions)) + prompt
        if len(self.responses) == 1:
            prompt += JUDGE_SINGLE
        return prompt


def fit(content: str) -> str:
    """``content`` cut in the middle to what one answer may cost the judge."""
    if len(content) <= MAX_ANSWER_CHARS_FOR_JUDGE:
        return content
    keep = MAX_ANSWER_CHARS_FOR_JUDGE // 2
    omitted = len(content) - 2 * keep
    return content[:keep] + TRUNCATED.format(omitted=omitted) + content[-keep:]


@dataclass(frozen=True)
class JudgeOutcome:
    """What the judge call gave: the verdict or why there is none, and whether it was repaired."""

    verdict: JudgeVerdict | None
    usage: Usage | None
    failure: JudgeFailure | None
    repaired: bool = False


@dataclass(frozen=True)
class Judgement:
    """The judge's analysis in slugs (``None`` when it failed), and how it was made."""

    analysis: Analysis | None
    meta: AnalysisMeta
    usage: Usage | None
    failure: JudgeFailure | None
    citations: tuple[Citation, ...] = ()


async def judge_panel(
    model: BaseChatModel,
    panel: Panel,
    question: str,
    config: RunnableConfig,
    *,
    instructions: str | None = None,
    research: bool = False,
    tools: Sequence[BaseTool] = (),
    server_tools: Sequence[dict[str, Any]] = (),
    max_tool_calls: int = 8,
) -> Judgement:
    """Have ``model`` compare ``panel``'s answers; cite only its panelists, in slugs.

    Args:
        model: The judge.
        panel: The labelled answers.
        question: The question they answer.
        config: The run config of the judge's calls.
        instructions: The asker's system instructions, shown as fenced context.
        research: First check disputed facts with the web tools (one more call).
        tools: The client-side web tools for that check.
        server_tools: The endpoint's own web tools, used instead of ``tools``.
        max_tool_calls: Tool-call budget of the check.
    """
    prompt = panel.prompt(question, instructions)
    messages: list[BaseMessage] = [SystemMessage(JUDGE_SYSTEM), HumanMessage(prompt)]
    research_usage: Usage | None = None
    cited: tuple[Citation, ...] = ()
    if research:
        notes = await answer_with_tools(
            model,
            [SystemMessage(JUDGE_SYSTEM), HumanMessage(prompt + JUDGE_VERIFY)],
            tools,
            max_tool_calls=max_tool_calls,
            config=config,
            server_tools=server_tools,
        )
        research_usage, cited = notes.usage, notes.citations
        text = fence(message_text(notes.message)) or "(none)"
        messages.append(HumanMessage(JUDGE_NOTES.format(notes=text)))
    outcome = await structured_verdict(model, messages, config, tuple(panel.labels))
    usage = outcome.usage
    if research_usage is not None:
        usage = Usage.total([usage, research_usage])
    if outcome.verdict is None:
        return Judgement(None, panel.meta(), usage, outcome.failure, cited)
    analysis, dropped = outcome.verdict.analysis().attributed(panel.labels)
    analysis, emptied = cleaned(analysis, [r.model for r in panel.responses])
    meta = panel.meta(dropped, outcome.repaired, emptied)
    return Judgement(analysis, meta, usage, None, cited)


async def structured_verdict(
    model: BaseChatModel,
    messages: list[BaseMessage],
    config: RunnableConfig,
    labels: Sequence[str] = (),
) -> JudgeOutcome:
    """Ask ``model`` for the verdict, with the strictest structured output it accepts.

    Output that is not clean JSON (prose or fences around it, trailing commas,
    several blocks) is repaired and validated before it counts as invalid.

    Args:
        model: The judge.
        messages: The judge's prompt.
        config: The run config of the call.
        labels: This run's response labels: the only values its schema lets
            a ``model``/``models`` field take.
    """
    traits = ModelTraits.of(model)
    preferred = traits.structured_method
    methods = [preferred] if preferred else list(_STRUCTURED_METHODS)
    capped = traits.schema_caps
    for index, method in enumerate(methods):
        runnable = _structured(model, tuple(labels), capped, method)
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
    if isinstance(parsed, JudgeVerdict):
        return JudgeOutcome(parsed, usage, None)
    if parsed is not None:
        try:
            return JudgeOutcome(JudgeVerdict.model_validate(parsed), usage, None)
        except ValidationError:
            pass
    texts = _raw_texts(raw)
    if parsed is None and not any(t.strip() for t in texts):
        return JudgeOutcome(None, usage, "judge_empty_completion")
    objects = [] if parsed is None else [parsed]
    for text in texts:
        objects += _json_objects(text)
    for candidate in objects[1:] if parsed is not None else objects:
        try:
            return JudgeOutcome(JudgeVerdict.model_validate(candidate), usage, None, repaired=True)
        except ValidationError:
            continue
    return JudgeOutcome(None, usage, "judge_schema_mismatch" if objects else "judge_not_valid_json")


def _raw_texts(raw: object) -> list[str]:
    """Where a judge's JSON may be: its text, and the arguments of its tool calls."""
    if not isinstance(raw, AIMessage):
        return []
    texts = [message_text(raw)]
    texts += [str(call.get("args") or "") for call in raw.invalid_tool_calls]
    texts += [json.dumps(call["args"]) for call in raw.tool_calls]
    return texts


def _json_objects(text: str) -> list[dict[str, Any]]:
    """The JSON objects that near-JSON ``text`` repairs into, and their merge when several."""
    if not text.strip():
        return []
    try:
        data = json_repair.loads(text)
    except (ValueError, RecursionError):
        return []
    blocks = data if isinstance(data, list) else [data]
    objects = [b for b in blocks if isinstance(b, dict) and b]
    if len(objects) > 1:
        # The verdict may be split across blocks (reasoning first, then the fields).
        objects.append(functools.reduce(lambda a, b: {**a, **b}, objects, {}))
    return objects


# The judge's structured output by model, labels, caps and method: building it
# converts and copies the schema, some 3,600 calls a run. An entry holds its
# model, so no other model can come to have the id in its key.
_STRUCTURED: BoundedCache[
    tuple[int, tuple[str, ...], bool, str], tuple[BaseChatModel, Runnable[Any, Any]]
] = BoundedCache(64)


def _structured(
    model: BaseChatModel, labels: tuple[str, ...], capped: bool, method: str
) -> Runnable[Any, Any]:
    """``with_structured_output(include_raw=True)``: the reply, and what its parser made of it."""
    key = (id(model), labels, capped, method)
    entry = _STRUCTURED.get(key)
    if entry is None:
        kwargs: dict[str, Any] = {"strict": True} if method == "json_schema" else {}
        schema = judge_schema(labels, capped=capped)
        chain = model.with_structured_output(schema, method=method, include_raw=True, **kwargs)
        entry = _STRUCTURED.setdefault(key, (model, chain))
    return entry[1]


def judge_schema(labels: Sequence[str] | None = None, *, capped: bool = False) -> dict[str, Any]:
    """The judge's JSON schema, inlined and strict-mode ready.

    Args:
        labels: This run's response labels. Every field that names a response
            (``model``, ``models``) becomes an ``enum`` of them, so a judge with
            constrained decoding cannot cite anyone else. ``None``: any string.
        capped: Add ``maxItems``/``maxLength`` caps, for small local models
            whose lists otherwise run on until ``max_tokens``.
    """
    return copy.deepcopy(_judge_schema(tuple(labels) if labels else None, capped))


@functools.cache
def _judge_schema(labels: tuple[str, ...] | None, capped: bool) -> dict[str, Any]:
    inlined = dereference_refs(JudgeVerdict.model_json_schema())
    inlined.pop("$defs", None)

    def strict(node: Any) -> Any:
        if isinstance(node, dict):
            out = {k: strict(v) for k, v in node.items() if k not in ("title", "default")}
            if out.pop("x-panel-label", False) and labels:
                out["enum"] = list(labels)
            if out.get("type") == "object":
                out["additionalProperties"] = False
                out["required"] = list(out.get("properties", {}))
            if capped and out.get("type") == "array":
                out["maxItems"] = 3
            if capped and out.get("type") == "string" and "enum" not in out:
                out["maxLength"] = 160
            return out
        if isinstance(node, list):
            return [strict(v) for v in node]
        return node

    schema: dict[str, Any] = strict(inlined)
    schema["title"] = "analysis"
    schema["description"] = "The comparison of the labelled responses."
    return schema
