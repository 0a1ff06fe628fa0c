"""Reading a request: its fields, the client's tools, and whether and how fusion runs.

Fusion comes three ways, as OpenRouter serves it: the server tool
(``tools: [{"type": "openrouter:fusion", "parameters": {...}}]``), the alias
(``model: "openrouter/fusion"``) and the plugin (``plugins: [{"id": "fusion",
...}]``). Each takes OpenRouter's fields and langfusion's own run
parameters; an unknown field is a 400 that names it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import BaseMessage

from langfusion.graph.context import FusionContext
from langfusion.tools.api.errors import ApiError
from langfusion.tools.api.messages import (
    SERVER_TOOL,
    TOOL_NAME,
    Conversation,
    FusionRecord,
    chat_conversation,
    responses_conversation,
)
from langfusion.tools.api.parameters import (
    FUSION_ALIASES,
    FusionRequest,
    fusion_request,
    fusion_settings,
    plugin_settings,
    refuse_unknown,
)

DEPTH_HEADERS = ("x-openrouter-fusion-depth", "x-fusion-depth")

__all__ = [
    "DEPTH_HEADERS",
    "FUSION_ALIASES",
    "FusionRequest",
    "Plan",
    "Turn",
    "chat_turn",
    "request_depth",
    "responses_turn",
]

# Every field of OpenRouter's and OpenAI's chat request; the ones with no
# meaning here (provider routing, logging) are accepted and left alone.
_CHAT_FIELDS = frozenset(
    {
        "model", "messages", "stream", "stream_options", "tools", "tool_choice", "plugins",
        "temperature", "top_p", "top_k", "top_a", "min_p", "max_tokens",
        "max_completion_tokens", "stop", "seed", "frequency_penalty", "presence_penalty",
        "repetition_penalty", "response_format", "parallel_tool_calls", "reasoning",
        "reasoning_effort", "logit_bias", "logprobs", "top_logprobs", "user", "metadata",
        "provider", "models", "route", "transforms", "usage", "session_id", "trace",
        "debug", "prediction", "modalities", "image_config", "service_tier", "cache_control",
        "prompt_cache_key", "prompt_cache_options", "prompt_cache_retention", "store", "n",
        "verbosity", "web_search_options", "safety_identifier", "deferred_tools",
        "stop_server_tools_when", "estimate",
    }
)  # fmt: skip
_RESPONSES_FIELDS = frozenset(
    {
        "model", "input", "instructions", "stream", "tools", "tool_choice", "plugins",
        "temperature", "top_p", "top_k", "max_output_tokens", "max_tool_calls", "stop",
        "frequency_penalty", "presence_penalty", "parallel_tool_calls", "reasoning",
        "text", "include", "metadata", "user", "provider", "models", "session_id", "trace",
        "debug", "store", "background", "truncation", "service_tier", "safety_identifier",
        "prompt", "prompt_cache_key", "prompt_cache_options", "cache_control", "modalities",
        "image_config", "top_logprobs", "previous_response_id", "deferred_tools",
        "stop_server_tools_when", "estimate",
    }
)  # fmt: skip
# Sampling options passed on to the model that answers (plain or calling model).
_PASSED = ("top_p", "stop", "seed", "frequency_penalty", "presence_penalty", "logit_bias")


@dataclass
class Turn:
    """One request, read: what to run and how to answer.

    Attributes:
        api: Which API it came through.
        model: The request's ``model``.
        conversation: The messages and the fusion already recorded for the question.
        tools: The client's own function tools (chat-completions format).
        tool_choice: The client's ``tool_choice`` for its own tools.
        settings: Model settings for the answering model (``temperature``,
            ``max_tokens``, ``reasoning``).
        options: Call options bound to the answering model (``stop``,
            ``response_format``, ...).
        fusion: How fusion applies; ``None`` for a plain completion.
        stream: The client asked for a stream.
        depth: The fusion depth the request says it runs at.
        estimate: The client asked for the fusion's cost projection instead of a run.
    """

    api: Literal["chat", "responses"]
    model: str
    conversation: Conversation
    tools: list[dict[str, Any]] = field(default_factory=list)
    tool_choice: Any = None
    settings: dict[str, Any] = field(default_factory=dict)
    options: dict[str, Any] = field(default_factory=dict)
    fusion: FusionRequest | None = None
    stream: bool = False
    depth: int = 0
    estimate: bool = False

    @property
    def messages(self) -> list[BaseMessage]:
        """The conversation's messages."""
        return self.conversation.messages

    @property
    def recorded(self) -> FusionRecord | None:
        """The fusion already recorded for this question, if any."""
        return self.conversation.recorded


@dataclass
class Plan:
    """A request, checked and ready to run: its calling model and its fusion configuration."""

    turn: Turn
    model: BaseChatModel | None
    context: FusionContext | None

    @property
    def answering(self) -> str:
        """The slug of the model that writes the answer (the alias: its synthesis model)."""
        alias = self.turn.fusion is not None and self.turn.fusion.alias
        return self.context.synthesizer if alias and self.context else self.turn.model


def request_depth(headers: Mapping[str, str]) -> int:
    """The fusion depth the request's headers say (an unreadable one counts as nested)."""
    depth = 0
    for name in DEPTH_HEADERS:
        raw = headers.get(name)
        if raw is None:
            continue
        try:
            depth = max(depth, int(raw.strip()))
        except ValueError:
            depth = max(depth, 1)
    return depth


def _client_tools(raw: object, flat: bool) -> tuple[list[dict[str, Any]], dict[str, Any] | None]:
    """The client's function tools (chat format) and the fusion tool's parameters, if offered."""
    if raw is None:
        return [], None
    if not isinstance(raw, list):
        raise ApiError(400, "tools must be an array.")
    functions: list[dict[str, Any]] = []
    fusion: dict[str, Any] | None = None
    for index, tool in enumerate(raw):
        where = f"tools[{index}]"
        kind = tool.get("type") if isinstance(tool, dict) else None
        if kind == SERVER_TOOL:
            refuse_unknown(tool, frozenset({"type", "parameters"}), where)
            fusion = fusion_settings(tool.get("parameters") or {}, f"{where}.parameters")
        elif kind == "function":
            spec = {k: v for k, v in tool.items() if k != "type"} if flat else tool.get("function")
            if not isinstance(spec, dict) or not isinstance(spec.get("name"), str):
                raise ApiError(400, f"{where} is a function tool without a name.")
            if spec["name"] == TOOL_NAME:
                raise ApiError(
                    400, f"{where}: the name {TOOL_NAME!r} is the fusion tool's; rename yours."
                )
            functions.append({"type": "function", "function": spec})
        else:
            raise ApiError(
                400,
                f"{where}.type {kind!r} is not served here: tools may be functions and "
                f"{SERVER_TOOL}.",
            )
    return functions, fusion


def _common(body: Mapping[str, Any]) -> tuple[str, bool, bool]:
    model = body.get("model")
    if not isinstance(model, str) or not model.strip():
        raise ApiError(400, "model is required: a model slug, or openrouter/fusion.")
    stream = body.get("stream", False)
    if not isinstance(stream, bool):
        raise ApiError(400, "stream must be true or false.")
    estimate = body.get("estimate", False)
    if not isinstance(estimate, bool):
        raise ApiError(400, "estimate must be true or false.")
    return model.strip(), stream, estimate


def _settings(body: Mapping[str, Any], max_tokens: object) -> dict[str, Any]:
    settings: dict[str, Any] = {}
    temperature = body.get("temperature")
    if temperature is not None:
        if isinstance(temperature, bool) or not isinstance(temperature, int | float):
            raise ApiError(400, "temperature must be a number.")
        settings["temperature"] = float(temperature)
    if max_tokens is not None:
        if isinstance(max_tokens, bool) or not isinstance(max_tokens, int) or max_tokens < 1:
            raise ApiError(400, "max_tokens must be a positive integer.")
        settings["max_tokens"] = max_tokens
    reasoning = body.get("reasoning")
    effort = (
        reasoning.get("effort") if isinstance(reasoning, dict) else body.get("reasoning_effort")
    )
    if isinstance(effort, str):
        settings["reasoning"] = effort
    return settings


def chat_turn(body: Mapping[str, Any], depth: int) -> Turn:
    """Read a ``POST /chat/completions`` body.

    Raises:
        ApiError: 400 for a body that is not a valid request, naming what is wrong.
    """
    refuse_unknown(body, _CHAT_FIELDS, "the request")
    model, stream, estimate = _common(body)
    tools, tool = _client_tools(body.get("tools"), flat=False)
    fusion = fusion_request(
        model, tool, plugin_settings(body.get("plugins")), body.get("tool_choice")
    )
    conversation = chat_conversation(
        body.get("messages"), replay=fusion is not None and not fusion.alias
    )
    options = {k: body[k] for k in _PASSED if body.get(k) is not None}
    if body.get("response_format") is not None:
        options["response_format"] = body["response_format"]
    if body.get("parallel_tool_calls") is not None:
        options["parallel_tool_calls"] = body["parallel_tool_calls"]
    max_tokens = body.get("max_completion_tokens", body.get("max_tokens"))
    return Turn(
        api="chat",
        model=model,
        conversation=conversation,
        tools=tools,
        tool_choice=body.get("tool_choice"),
        settings=_settings(body, max_tokens),
        options=options,
        fusion=fusion,
        stream=stream,
        depth=depth,
        estimate=estimate,
    )


def _responses_choice(choice: object) -> object:
    """A Responses ``tool_choice`` in chat-completions form."""
    if isinstance(choice, dict) and choice.get("type") == "function" and "name" in choice:
        return {"type": "function", "function": {"name": choice["name"]}}
    return choice


def responses_turn(body: Mapping[str, Any], depth: int) -> Turn:
    """Read a ``POST /responses`` body.

    Raises:
        ApiError: 400 for a body that is not a valid request, naming what is wrong.
    """
    refuse_unknown(body, _RESPONSES_FIELDS, "the request")
    model, stream, estimate = _common(body)
    if body.get("previous_response_id"):
        raise ApiError(
            400,
            "previous_response_id: this server keeps no responses; send the whole "
            "conversation (with the openrouter:fusion item) in input.",
        )
    tools, tool = _client_tools(body.get("tools"), flat=True)
    choice = _responses_choice(body.get("tool_choice"))
    fusion = fusion_request(model, tool, plugin_settings(body.get("plugins")), choice)
    conversation = responses_conversation(
        body.get("input"), body.get("instructions"), replay=fusion is not None and not fusion.alias
    )
    options = {k: body[k] for k in ("top_p", "stop") if body.get(k) is not None}
    text = body.get("text")
    if isinstance(text, dict) and isinstance(text.get("format"), dict):
        form = dict(text["format"])
        if form.get("type") == "json_schema":
            name = form.pop("name", "answer")
            options["response_format"] = {
                "type": "json_schema",
                "json_schema": {"name": name, **{k: v for k, v in form.items() if k != "type"}},
            }
        elif form.get("type") == "json_object":
            options["response_format"] = {"type": "json_object"}
    if body.get("parallel_tool_calls") is not None:
        options["parallel_tool_calls"] = body["parallel_tool_calls"]
    return Turn(
        api="responses",
        model=model,
        conversation=conversation,
        tools=tools,
        tool_choice=choice,
        settings=_settings(body, body.get("max_output_tokens")),
        options=options,
        fusion=fusion,
        stream=stream,
        depth=depth,
        estimate=estimate,
    )
