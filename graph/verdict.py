"""The judge's verdict as structured output: the per-run schema, the call, and repair.

For a langchain-openai judge the structured output is built from LangChain's
public parts (the model bound to the response format or the tool, then its
output parser), so that the reply and its parsing are one model call and one
parse; any other chat model's own ``with_structured_output`` is used whole.
Output that is not clean JSON is repaired and validated before it is declared
``judge_not_valid_json``.
"""

from __future__ import annotations

import copy
import dataclasses
import functools
import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import json_repair
import openai
from langchain_core.exceptions import OutputParserException
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage
from langchain_core.output_parsers import (
    BaseOutputParser,
    JsonOutputKeyToolsParser,
    JsonOutputParser,
)
from langchain_core.outputs import ChatGeneration
from langchain_core.runnables import Runnable, RunnableConfig
from langchain_core.utils.json_schema import dereference_refs
from langchain_openai.chat_models.base import BaseChatOpenAI
from pydantic import ValidationError

from langfusion.graph.citations import from_annotations
from langfusion.graph.conversation import message_text
from langfusion.graph.models import BoundedCache, ModelTraits
from langfusion.graph.schema import Citation, JudgeFailure, JudgeVerdict, Usage

_STRUCTURED_METHODS = ("json_schema", "function_calling", "json_mode")


@dataclass(frozen=True)
class JudgeOutcome:
    """What the judge call gave: the verdict or why there is none, and whether it was repaired."""

    verdict: JudgeVerdict | None
    usage: Usage | None
    failure: JudgeFailure | None
    repaired: bool = False
    # Pages the judge's own call cited (OpenRouter's server tools, as url_citation annotations).
    citations: tuple[Citation, ...] = ()


async def structured_verdict(
    model: BaseChatModel,
    messages: list[BaseMessage],
    config: RunnableConfig,
    labels: Sequence[str] = (),
    server_tools: Sequence[dict[str, Any]] = (),
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
        server_tools: The endpoint's own web tools, offered in the same call.
    """
    raw, parsed = await _structured_reply(model, messages, config, labels, server_tools)
    outcome = _judged(raw, parsed)
    cited = tuple(from_annotations(raw)) if isinstance(raw, AIMessage) else ()
    return dataclasses.replace(outcome, citations=cited) if cited else outcome


async def _structured_reply(
    model: BaseChatModel,
    messages: list[BaseMessage],
    config: RunnableConfig,
    labels: Sequence[str],
    server_tools: Sequence[dict[str, Any]],
) -> tuple[Any, Any]:
    """The judge's reply and what its parser made of it, trying methods it may refuse."""
    traits = ModelTraits.of(model)
    preferred = traits.structured_method
    methods = [preferred] if preferred else list(_STRUCTURED_METHODS)
    capped = traits.schema_caps
    for index, method in enumerate(methods):
        runnable = _structured(model, tuple(labels), capped, method, json.dumps(server_tools))
        try:
            out = await runnable.ainvoke(messages, config)
        except (openai.BadRequestError, openai.UnprocessableEntityError):
            if index + 1 == len(methods):
                raise
            continue
        break
    raw = out.get("raw") if isinstance(out, dict) else None
    return raw, out.get("parsed") if isinstance(out, dict) else out


def _judged(raw: Any, parsed: Any) -> JudgeOutcome:
    """The verdict in ``parsed``, or repaired from ``raw``, or why there is none."""
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
    tuple[int, tuple[str, ...], bool, str, str], tuple[BaseChatModel, _Structured]
] = BoundedCache(64)


@dataclass(frozen=True)
class _Structured:
    """The judge bound to answer in the schema, and the parser of its reply.

    ``parser`` is ``None`` where ``bound`` is the model's own
    ``with_structured_output(include_raw=True)`` (a model that is not langchain-openai's).
    """

    bound: Runnable[Any, Any]
    parser: BaseOutputParser[Any] | None = None

    async def ainvoke(self, messages: list[BaseMessage], config: RunnableConfig) -> Any:
        """``{"raw": the reply, "parsed": what the parser made of it, or None}``."""
        if self.parser is None:
            return await self.bound.ainvoke(messages, config)
        raw = await self.bound.ainvoke(messages, config)
        parsed = None
        if not (isinstance(raw, AIMessage) and raw.additional_kwargs.get("refusal")):
            try:
                parsed = self.parser.parse_result([ChatGeneration(message=raw)])
            except (OutputParserException, ValueError):
                parsed = None  # repaired from the raw reply below, or declared invalid
        return {"raw": raw, "parsed": parsed}


def _structured(
    model: BaseChatModel, labels: tuple[str, ...], capped: bool, method: str, tools: str
) -> _Structured:
    key = (id(model), labels, capped, method, tools)
    entry = _STRUCTURED.get(key)
    if entry is None:
        schema = judge_schema(labels, capped=capped)
        bound = _bound(model, schema, method, json.loads(tools))
        entry = _STRUCTURED.setdefault(key, (model, bound))
    return entry[1]


def _bound(
    model: BaseChatModel, schema: dict[str, Any], method: str, server_tools: list[dict[str, Any]]
) -> _Structured:
    strict = method == "json_schema"
    if not isinstance(model, BaseChatOpenAI):
        kwargs: dict[str, Any] = {"strict": True} if strict else {}
        return _Structured(
            model.with_structured_output(schema, method=method, include_raw=True, **kwargs)
        )
    traced = {"kwargs": {"method": method, "strict": strict or None}, "schema": schema}
    name = schema["title"]
    if method == "function_calling":
        bound = model.bind_tools([schema], tool_choice=name, ls_structured_output_format=traced)
        return _Structured(bound, JsonOutputKeyToolsParser(key_name=name, first_tool_only=True))
    response_format: dict[str, Any] = {"type": "json_object"}
    if strict:
        response_format = {
            "type": "json_schema",
            "json_schema": {
                "name": name,
                "description": schema["description"],
                "schema": schema,
                "strict": True,
            },
        }
    if server_tools:
        # The endpoint's own web tools ride the judge's one call (OpenRouter's Fusion does
        # the same). The SDK's parsing path refuses any tool that is not a function, so the
        # response format goes as a plain request field, and the parser reads the reply.
        extra_body = {**(model.extra_body or {}), "response_format": response_format}
        bound = model.bind(
            extra_body=extra_body, tools=server_tools, ls_structured_output_format=traced
        )
    else:
        bound = model.bind(response_format=response_format, ls_structured_output_format=traced)
    return _Structured(bound, JsonOutputParser())


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
