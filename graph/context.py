"""The frozen run configuration of a fusion: the graph's ``context_schema``."""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal, get_args

Preset = Literal["quality", "budget", "local"]
ReasoningEffort = Literal["minimal", "low", "medium", "high"]

API_KEY_ENV = "OPENROUTER_API_KEY"
MAX_PANEL = 8
MAX_TOOL_CALLS = 16

LOCAL_SLUG = "local/gemma-3-270m"


@dataclass(frozen=True)
class PresetModels:
    """A named panel and its judge."""

    panel: tuple[str, ...]
    judge: str


PRESETS: dict[Preset, PresetModels] = {
    "quality": PresetModels(
        panel=("~anthropic/claude-opus-latest", "~openai/gpt-latest", "~google/gemini-pro-latest"),
        judge="~anthropic/claude-opus-latest",
    ),
    "budget": PresetModels(
        panel=(
            "~google/gemini-flash-latest",
            "deepseek/deepseek-v3.2-20251201",
            "~moonshotai/kimi-latest",
        ),
        judge="~google/gemini-flash-latest",
    ),
    # Self-fusion: three samples of the embedded model, told apart by the
    # `#n` suffix that also picks each sample's seed and temperature.
    "local": PresetModels(
        panel=(f"{LOCAL_SLUG}#1", f"{LOCAL_SLUG}#2", f"{LOCAL_SLUG}#3"),
        judge=LOCAL_SLUG,
    ),
}


def default_preset() -> Preset:
    """The preset used when none is named: ``local`` when no API key is set."""
    return "quality" if os.environ.get(API_KEY_ENV) else "local"


def _check_literal(name: str, value: object, options: object) -> None:
    allowed = get_args(options)
    if value not in allowed:
        raise ValueError(f"{name} must be one of {', '.join(map(repr, allowed))}; got {value!r}.")


def _check_slug(name: str, slug: object) -> str:
    if not isinstance(slug, str) or not slug.strip():
        raise ValueError(f"{name} must be a non-empty model slug such as 'openai/gpt-4o'.")
    if slug != slug.strip():
        raise ValueError(f"{name} {slug!r} has surrounding whitespace; remove it.")
    return slug


@dataclass(frozen=True, kw_only=True)
class FusionContext:
    """Everything a fusion run is configured with.

    Passed as ``context=`` to the graph (``graph.ainvoke(..., context=FusionContext(...))``).
    Unset models come from the preset; invalid values raise ``ValueError``
    here, before any model is called.

    Attributes:
        analysis_models: 1 to 8 distinct slugs answering in parallel (the panel).
        model: Slug of the judge. Defaults to the preset's judge.
        synthesis_model: Slug that writes the final answer. Defaults to ``model``.
        max_tool_calls: Web tool calls allowed in each panel or judge call (1 to 16).
        max_completion_tokens: Cap on each panel completion; ``None`` is the provider's default.
        temperature: Panel temperature; the judge always runs at 0.
        reasoning: Reasoning effort passed to models that take one.
        preset: Named panel and judge; ``None`` is ``quality``, or ``local``
            when no ``OPENROUTER_API_KEY`` is set and no models are named.
        timeout_s: Wall-clock deadline of each panel call, retries included.
        judge_timeout_s: Deadline of each judge attempt.
        synthesis_timeout_s: Deadline of each synthesis attempt.
        synthesize: Whether to write the final answer (the tool leaves it to its caller).
        web_tools: Whether panel calls may use ``web_search``/``web_fetch``.
        judge_web_tools: Let the judge check disputed facts with the web tools
            before its analysis (one more judge call; off by default).
        preset_used: The preset the defaults came from (resolved).
        panel: The resolved panel slugs.
        judge: The resolved judge slug.
        synthesizer: The resolved synthesis slug.
    """

    analysis_models: Sequence[str] | None = None
    model: str | None = None
    synthesis_model: str | None = None
    max_tool_calls: int = 8
    max_completion_tokens: int | None = None
    temperature: float | None = None
    reasoning: ReasoningEffort | None = None
    preset: Preset | None = None
    timeout_s: float = 180.0
    judge_timeout_s: float = 180.0
    synthesis_timeout_s: float = 180.0
    synthesize: bool = True
    web_tools: bool = True
    judge_web_tools: bool = False
    preset_used: Preset = field(init=False)
    panel: tuple[str, ...] = field(init=False)
    judge: str = field(init=False)
    synthesizer: str = field(init=False)

    def __post_init__(self) -> None:
        if self.preset is not None:
            _check_literal("preset", self.preset, Preset)
        named = self.analysis_models is not None or self.model is not None
        preset = self.preset or ("quality" if named else default_preset())
        defaults = PRESETS[preset]

        if isinstance(self.analysis_models, str):
            raise ValueError("analysis_models must be a list of slugs, not a single string.")
        panel = tuple(self.analysis_models) if self.analysis_models is not None else defaults.panel
        if not 1 <= len(panel) <= MAX_PANEL:
            raise ValueError(
                f"analysis_models must name 1 to {MAX_PANEL} models; got {len(panel)}."
            )
        for slug in panel:
            _check_slug("each analysis model", slug)
        duplicates = sorted({slug for slug in panel if panel.count(slug) > 1})
        if duplicates:
            raise ValueError(
                f"analysis_models lists {', '.join(duplicates)} more than once; "
                "name each model once (append '#2' to sample the same model twice)."
            )
        judge = _check_slug("model", self.model) if self.model is not None else defaults.judge
        synthesizer = (
            _check_slug("synthesis_model", self.synthesis_model)
            if self.synthesis_model is not None
            else judge
        )

        if isinstance(self.max_tool_calls, bool) or not isinstance(self.max_tool_calls, int):
            raise ValueError("max_tool_calls must be an integer from 1 to 16.")
        if not 1 <= self.max_tool_calls <= MAX_TOOL_CALLS:
            raise ValueError(
                f"max_tool_calls must be from 1 to {MAX_TOOL_CALLS}; got {self.max_tool_calls}."
            )
        if self.max_completion_tokens is not None and (
            isinstance(self.max_completion_tokens, bool)
            or not isinstance(self.max_completion_tokens, int)
            or self.max_completion_tokens < 1
        ):
            raise ValueError("max_completion_tokens must be a positive integer or None.")
        if self.temperature is not None and not 0 <= self.temperature <= 2:
            raise ValueError(f"temperature must be from 0 to 2; got {self.temperature}.")
        if self.reasoning is not None:
            _check_literal("reasoning", self.reasoning, ReasoningEffort)
        for name in ("timeout_s", "judge_timeout_s", "synthesis_timeout_s"):
            value = getattr(self, name)
            if not isinstance(value, int | float) or isinstance(value, bool) or value <= 0:
                raise ValueError(f"{name} must be a positive number of seconds; got {value!r}.")

        if self.analysis_models is not None:
            object.__setattr__(self, "analysis_models", panel)
        object.__setattr__(self, "preset_used", preset)
        object.__setattr__(self, "panel", panel)
        object.__setattr__(self, "judge", judge)
        object.__setattr__(self, "synthesizer", synthesizer)
