"""The judge: neutral labels, the judge prompt, its JSON schema and structured output."""

from __future__ import annotations

import functools
import random
import string
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import openai
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage
from langchain_core.runnables import RunnableConfig
from langchain_core.utils.json_schema import dereference_refs
from pydantic import ValidationError

from langfusion.graph.conversation import message_text
from langfusion.graph.models import SCHEMA_CAPS_KEY, STRUCTURED_METHOD_KEY
from langfusion.graph.prompts import JUDGE_RESPONSE, JUDGE_USER, TRUNCATED
from langfusion.graph.schema import JudgeFailure, JudgeVerdict, PanelResponse, Usage

# What one panel answer may cost the judge: longer answers are cut in the middle.
MAX_ANSWER_CHARS_FOR_JUDGE = 24_000
_STRUCTURED_METHODS = ("json_schema", "function_calling", "json_mode")


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

    def prompt(self, question: str) -> str:
        """The judge's user prompt: the question and one response element per answer."""
        return JUDGE_USER.format(
            question=question,
            responses="\n\n".join(
                JUDGE_RESPONSE.format(label=label, content=fit(r.content))
                for label, r in zip(self.labels, self.responses, strict=True)
            ),
        )


def fit(content: str) -> str:
    """``content`` cut in the middle to what one answer may cost the judge."""
    if len(content) <= MAX_ANSWER_CHARS_FOR_JUDGE:
        return content
    keep = MAX_ANSWER_CHARS_FOR_JUDGE // 2
    omitted = len(content) - 2 * keep
    return content[:keep] + TRUNCATED.format(omitted=omitted) + content[-keep:]


async def structured_verdict(
    model: BaseChatModel, messages: list[BaseMessage], config: RunnableConfig
) -> tuple[JudgeVerdict | None, Usage | None, JudgeFailure | None]:
    """Ask ``model`` for the verdict, with the strictest structured output it accepts."""
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
            and not message_text(raw).strip()
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
    inlined = dereference_refs(JudgeVerdict.model_json_schema())
    inlined.pop("$defs", None)

    def strict(node: Any) -> Any:
        if isinstance(node, dict):
            out = {k: strict(v) for k, v in node.items() if k not in ("title", "default")}
            if out.get("type") == "object":
                out["additionalProperties"] = False
                out["required"] = list(out.get("properties", {}))
            if capped and out.get("type") == "array":
                out["maxItems"] = 3
            if capped and out.get("type") == "string":
                out["maxLength"] = 160
            return out
        if isinstance(node, list):
            return [strict(v) for v in node]
        return node

    schema: dict[str, Any] = strict(inlined)
    schema["title"] = "analysis"
    schema["description"] = "The comparison of the labelled responses."
    return schema
