"""The fusion tool's ``parameters`` and the fusion plugin, read into run parameters.

Both take OpenRouter's fields (``analysis_models``, ``model``, ``max_tool_calls``,
``max_completion_tokens``, ``temperature``, ``reasoning``, ``preset``, ``tools``)
and langfusion's own run parameters (``FusionContext``); an unknown field is a
400 that names it.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from langfusion.graph.context import FusionContext
from langfusion.tools.api.errors import ApiError
from langfusion.tools.api.messages import SERVER_TOOL, TOOL_NAME

__all__ = [
    "FUSION_ALIASES",
    "FusionRequest",
    "fusion_request",
    "fusion_settings",
    "plugin_settings",
    "refuse_unknown",
]

FUSION_ALIASES = frozenset({"openrouter/fusion", "langfusion/fusion"})

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


def refuse_unknown(given: Iterable[str], known: frozenset[str], where: str) -> None:
    """Raise a 400 naming every field of ``given`` that is not in ``known``."""
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
    refuse_unknown(raw, _OPENROUTER_FIELDS | _RUN_FIELDS | extra, where)
    settings = {k: v for k, v in raw.items() if k not in extra and k != "cache_control"}
    preset = settings.get("preset")
    if isinstance(preset, str):
        settings["preset"] = _PRESETS.get(preset, preset)
    reasoning = settings.get("reasoning")
    if isinstance(reasoning, dict):
        refuse_unknown(reasoning, frozenset({"effort", "max_tokens", "enabled", "exclude"}), where)
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


def plugin_settings(raw: object) -> dict[str, Any] | None:
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


def fusion_request(
    model: str, tool: dict[str, Any] | None, plugin: dict[str, Any] | None, choice: object
) -> FusionRequest | None:
    """How fusion applies, from the request's model, fusion tool, plugin and ``tool_choice``.

    The alias forces the whole pipeline (the plugin and the tool's parameters
    configure it); otherwise the tool or the plugin offers the server tool,
    forced by ``tool_choice: "required"`` (or naming it). ``None``: no fusion.
    """
    if model in FUSION_ALIASES:
        return FusionRequest(settings={**(plugin or {}), **(tool or {})}, alias=True, forced=True)
    if tool is None and plugin is None:
        return None
    settings = {**(plugin or {}), **(tool or {})}
    return FusionRequest(settings=settings, alias=False, forced=_forces_fusion(choice))
