"""Reading a request: its fields, the client's tools, and whether and how fusion runs.

Fusion comes three ways, as OpenRouter serves it: the server tool
(``tools: [{"type": "openrouter:fusion", "parameters": {...}}]``), the alias
(``model: "openrouter/fusion"``) and the plugin (``plugins: [{"id": "fusion",
...}]``). Each takes OpenRouter's fields and langfusion's own run
parameters; an unknown field is a 400 that names it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

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

__all__ = [
    "DEPTH_HEADERS",
    "FUSION_ALIASES",
    "FusionRequest",
    "Turn",
    "chat_turn",
    "request_depth",
    "responses_turn",
]

FUSION_ALIASES = frozenset({"openrouter/fusion", "langfusion/fusion"})
DEPTH_HEADERS = ("x-openrouter-fusion-depth", "x-fusion-depth")

# The tool's `parameters` as OpenRouter documents them; `preset`, `reasoning` and
# `tools` are translated, `cache_control` has nothing to do here.
_OPENROUTER_FIELDS = frozenset(
    {
        "analysis_models",
        "model",
        "max_tool_calls",
        "max_completion_tokens",
        "temperature",
        "reasoning",
        "preset",
        "tools",
        "cache_control",
    }
)
# The API decides these two itself: the alias synthesizes, the tool does not;
# panel tokens stream where a client streams the Responses API.
_RUN_FIELDS = frozenset(f.name for f in FusionContext.parameters()) - {
    "synthesize",
    "stream_panel_tokens",
}
_PRESETS = {"general-high": "quality", "general-budget": "budget"}
_WEB_TOOLS = frozenset({"openrouter:web_search", "openrouter:web_fetch"})

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


@dataclass(frozen=True)
class FusionRequest:
    """How fusion applies to a request.

    Attributes:
        settings: ``FusionContext`` parameters the request set.
        alias: The whole pipeline answers (``openrouter/fusion``); else the
            server tool is offered to the request's model.
        forced: The calling model must call the tool (``tool_choice: "required"``).
    """

    settings: dict[str, Any]
    alias: bool
    forced: bool = False


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

    @property
    def messages(self) -> list[BaseMessage]:
        """The conversation's messages."""
        return self.conversation.messages

    @property
    def recorded(self) -> FusionRecord | None:
        """The fusion already recorded for this question, if any."""
        return self.conversation.recorded


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


def _unknown(given: Iterable[str], known: frozenset[str], where: str) -> None:
    unknown = sorted(set(given) - known)
    if unknown:
        raise ApiError(
            400,
            f"{where} has unknown field(s) {', '.join(map(repr, unknown))}.",
            metadata={"unknown_fields": unknown},
        )


def fusion_settings(
    raw: object, where: str, *, extra: frozenset[str] = frozenset()
) -> dict[str, Any]:
    """The run parameters in a tool's ``parameters`` or a plugin entry.

    Raises:
        ApiError: 400 naming an unknown field or a value that is not valid.
    """
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise ApiError(400, f"{where} must be an object.")
    _unknown(raw, _OPENROUTER_FIELDS | _RUN_FIELDS | extra, where)
    settings = {k: v for k, v in raw.items() if k not in extra and k != "cache_control"}
    preset = settings.get("preset")
    if isinstance(preset, str):
        settings["preset"] = _PRESETS.get(preset, preset)
    reasoning = settings.get("reasoning")
    if isinstance(reasoning, dict):
        _unknown(reasoning, frozenset({"effort", "max_tokens", "enabled", "exclude"}), where)
        settings["reasoning"] = reasoning.get("effort")
    tools = settings.pop("tools", None)
    if tools is not None:
        if not isinstance(tools, list):
            raise ApiError(400, f"{where}.tools must be an array of server tools.")
        kinds = {t.get("type") if isinstance(t, dict) else None for t in tools}
        if not kinds <= _WEB_TOOLS:
            raise ApiError(
                400,
                f"{where}.tools may hold only openrouter:web_search and openrouter:web_fetch "
                "(an empty array turns the panel's web tools off).",
            )
        settings.setdefault("web_tools", bool(tools))
    return settings


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
            _unknown(tool, frozenset({"type", "parameters"}), where)
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


def _plugin(raw: object) -> dict[str, Any] | None:
    """The fusion plugin's settings; ``None`` when there is none or it is disabled."""
    if raw is None:
        return None
    if not isinstance(raw, list):
        raise ApiError(400, "plugins must be an array.")
    found: dict[str, Any] | None = None
    for index, plugin in enumerate(raw):
        if not isinstance(plugin, dict) or plugin.get("id") != "fusion":
            ident = plugin.get("id") if isinstance(plugin, dict) else plugin
            raise ApiError(400, f"plugins[{index}]: plugin {ident!r} is not served here.")
        enabled = plugin.get("enabled", True)
        if not isinstance(enabled, bool):
            raise ApiError(400, f"plugins[{index}].enabled must be true or false.")
        settings = fusion_settings(plugin, f"plugins[{index}]", extra=frozenset({"id", "enabled"}))
        found = settings if enabled else None
    return found


def _forces_fusion(choice: object) -> bool:
    if choice == "required":
        return True
    if isinstance(choice, dict):
        named = choice.get("name") or (choice.get("function") or {}).get("name")
        return choice.get("type") == SERVER_TOOL or named == TOOL_NAME
    return False


def _fusion(
    model: str, tool: dict[str, Any] | None, plugin: dict[str, Any] | None, choice: object
) -> FusionRequest | None:
    if model in FUSION_ALIASES:
        return FusionRequest(settings={**(plugin or {}), **(tool or {})}, alias=True, forced=True)
    if tool is None and plugin is None:
        return None
    settings = {**(plugin or {}), **(tool or {})}
    return FusionRequest(settings=settings, alias=False, forced=_forces_fusion(choice))


def _common(body: Mapping[str, Any]) -> tuple[str, bool]:
    model = body.get("model")
    if not isinstance(model, str) or not model.strip():
        raise ApiError(400, "model is required: a model slug, or openrouter/fusion.")
    stream = body.get("stream", False)
    if not isinstance(stream, bool):
        raise ApiError(400, "stream must be true or false.")
    if body.get("estimate"):
        raise ApiError(
            400, "estimate: the cost projection is not served by this version of langfusion."
        )
    return model.strip(), stream


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
    _unknown(body, _CHAT_FIELDS, "the request")
    model, stream = _common(body)
    tools, tool = _client_tools(body.get("tools"), flat=False)
    fusion = _fusion(model, tool, _plugin(body.get("plugins")), body.get("tool_choice"))
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
    _unknown(body, _RESPONSES_FIELDS, "the request")
    model, stream = _common(body)
    if body.get("previous_response_id"):
        raise ApiError(
            400,
            "previous_response_id: this server keeps no responses; send the whole "
            "conversation (with the openrouter:fusion item) in input.",
        )
    tools, tool = _client_tools(body.get("tools"), flat=True)
    choice = _responses_choice(body.get("tool_choice"))
    fusion = _fusion(model, tool, _plugin(body.get("plugins")), choice)
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
    )
