"""The frozen run configuration of a fusion: the graph's ``context_schema``.

``FusionContext`` is the one declaration of the run parameters. The tool, the
plugin, the model alias and the command line derive their fields and options
from its fields (``parameters()``), each of which carries its help text and
its command-line option in ``metadata``.
"""

from __future__ import annotations

import dataclasses
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, get_args

Preset = Literal["quality", "budget", "local", "general-high", "general-budget"]
ReasoningEffort = Literal["minimal", "low", "medium", "high"]

API_KEY_ENV = "OPENROUTER_API_KEY"
MAX_PANEL = 8
MAX_TOOL_CALLS = 16
MAX_RETRIES = 10

# The embedded default, chosen on the judge-fidelity harness (benchmarks/README.md):
# SmolLM2-135M-Instruct scores above gemma-3-270m, in a third of its time.
LOCAL_SLUG = "local/smollm2-135m"


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
# OpenRouter's names for the same two sets.
PRESET_ALIASES: dict[Preset, Preset] = {"general-high": "quality", "general-budget": "budget"}
PRESETS["general-high"] = PRESETS["quality"]
PRESETS["general-budget"] = PRESETS["budget"]


def default_preset() -> Preset:
    """The preset used when none is named: ``local`` when no API key is set."""
    return "quality" if os.environ.get(API_KEY_ENV) else "local"


def _param(
    default: Any, help: str, *, option: str | None = None, metavar: str | None = None
) -> Any:
    """A run parameter: its default, its help text and its command-line option."""
    return field(default=default, metadata={"help": help, "option": option, "metavar": metavar})


@dataclass(frozen=True, kw_only=True)
class FusionContext:
    """Everything a fusion run is configured with.

    Passed as ``context=`` to the graph (``graph.ainvoke(..., context=FusionContext(...))``).
    Unset models come from the preset; invalid values raise ``ValueError``
    here, before any model is called. Each parameter's meaning is in its
    field's ``metadata["help"]`` (``FusionContext.parameters()`` lists them).

    Attributes:
        analysis_models: 1 to 8 distinct slugs answering in parallel (the panel).
        model: Slug of the judge. Defaults to the preset's judge.
        synthesis_model: Slug that writes the final answer. Defaults to ``model``.
        max_tool_calls: Web tool calls allowed in each panel or judge call (1 to 16).
        max_completion_tokens: Cap on each panel and judge completion; ``None`` is
            16000 for slugs served by OpenRouter (as its Fusion), else the provider's default.
        temperature: Panel temperature; the judge always runs at 0.
        reasoning: Reasoning effort passed to models that take one.
        preset: Named panel and judge; ``None`` is ``quality``, or ``local``
            when no ``OPENROUTER_API_KEY`` is set and no models are named
            (OpenRouter's ``general-high`` and ``general-budget`` are
            ``quality`` and ``budget``).
        timeout_s: Deadline of each panel call, its retries included.
        judge_timeout_s: Deadline of the judge, its retries included.
        synthesis_timeout_s: Deadline of the synthesis, its retries included.
        max_retries: Retries of each model call after a 429, a 5xx or a dropped
            connection (0 to 10), within that call's deadline.
        synthesize: Whether to write the final answer (the tool leaves it to its caller).
        web_tools: Whether panel calls may use ``web_search``/``web_fetch``.
        judge_web_tools: Let the judge check disputed facts on the web. ``None``:
            on where the judge's endpoint runs OpenRouter's web tools in the
            judge's own call, off elsewhere (there it costs one more call).
        quorum_grace_s: Once ``min_responses`` answers are in, wait at most this
            many seconds more, then cut the panelists still running
            (``cut_after_quorum``); ``None`` waits for each up to its deadline.
        fallback_models: Slugs that take the place of a panel model that failed
            for good, each at most once (one already on the panel is skipped).
        max_cost_usd: Refuse a run whose projected worst case (``estimate_cost``)
            is above this many US dollars, or cannot be bounded, before any
            model is called (``budget_exceeded``); ``None``: no budget.
        min_responses: Fewest surviving panel answers the judge may compare
            (1 to the panel's size); fewer ends the run with ``insufficient_responses``.
        stream_panel_tokens: Stream panel tokens into the ``messages`` stream as
            they come; off, each panel call is one whole reply (cheaper).
        preset_used: The preset the defaults came from (resolved).
        panel: The resolved panel slugs.
        judge: The resolved judge slug.
        synthesizer: The resolved synthesis slug.
    """

    analysis_models: Sequence[str] | None = _param(
        None,
        "panel models, comma-separated or repeated (1 to 8; default: the preset's panel)",
        option="--models",
        metavar="SLUGS",
    )
    model: str | None = _param(
        None, "judge model (default: the preset's judge)", option="--judge", metavar="SLUG"
    )
    synthesis_model: str | None = _param(
        None, "model writing the answer (default: the judge)", metavar="SLUG"
    )
    max_tool_calls: int = _param(
        4, "web tool calls allowed per panel or judge call (1 to 16)", metavar="N"
    )
    max_completion_tokens: int | None = _param(
        None,
        "cap on each panel and judge completion (default: 16000 for slugs served by "
        "OpenRouter, else the provider's)",
        option="--max-tokens",
        metavar="N",
    )
    temperature: float | None = _param(
        None, "panel temperature, 0 to 2 (the judge always runs at 0)", metavar="T"
    )
    reasoning: ReasoningEffort | None = _param(None, "reasoning effort for models that take one")
    preset: Preset | None = _param(
        None,
        "named panel and judge (default: quality, or local without an API key; "
        "general-high and general-budget are quality and budget)",
    )
    timeout_s: float = _param(
        180.0,
        "deadline of each panel call, retries included",
        option="--timeout",
        metavar="SECONDS",
    )
    judge_timeout_s: float = _param(
        180.0,
        "deadline of the judge, retries included",
        option="--judge-timeout",
        metavar="SECONDS",
    )
    synthesis_timeout_s: float = _param(
        180.0,
        "deadline of the synthesis, retries included",
        option="--synthesis-timeout",
        metavar="SECONDS",
    )
    max_retries: int = _param(
        2,
        "retries of each model call after a 429, a 5xx or a dropped connection (0 to 10), "
        "within its deadline",
        metavar="N",
    )
    synthesize: bool = _param(
        True, "write the final answer (off: stop at the analysis)", option="--synthesis"
    )
    web_tools: bool = _param(True, "offer web_search/web_fetch to the panel models", option="--web")
    judge_web_tools: bool | None = _param(
        None,
        "let the judge check disputed facts on the web (default: on where its endpoint runs "
        "OpenRouter's web tools in the judge's own call; off elsewhere, where it costs one "
        "more judge call)",
    )
    quorum_grace_s: float | None = _param(
        None,
        "once min_responses answers are in, wait at most this many seconds more for the "
        "rest, then cut them (default: wait for every panelist up to its deadline)",
        option="--quorum-grace",
        metavar="SECONDS",
    )
    fallback_models: Sequence[str] | None = _param(
        None,
        "slugs that take the place of a panel model that failed, each once, comma-separated "
        "or repeated (default: none)",
        option="--fallback-models",
        metavar="SLUGS",
    )
    max_cost_usd: float | None = _param(
        None,
        "refuse a run whose projected worst-case cost is above this many US dollars, or has "
        "models without a price, before any model is called (default: no budget)",
        metavar="USD",
    )
    min_responses: int = _param(
        1,
        "fewest surviving panel answers the judge may compare; fewer is an error "
        "(insufficient_responses)",
        metavar="N",
    )
    stream_panel_tokens: bool = _param(
        False,
        "stream each panel model's tokens into the graph's messages stream as they come "
        "(the playground shows them live); off, each panel call is one whole reply",
    )
    preset_used: Preset = field(init=False)
    panel: tuple[str, ...] = field(init=False)
    judge: str = field(init=False)
    synthesizer: str = field(init=False)

    @classmethod
    def parameters(cls) -> tuple[dataclasses.Field[Any], ...]:
        """The run parameters a caller may set: the fields that ``__init__`` takes."""
        return tuple(f for f in dataclasses.fields(cls) if f.init)

    @classmethod
    def from_parameters(cls, values: Mapping[str, Any], *, owner: str) -> FusionContext:
        """Build a context from keyword values, naming any keyword that is not a parameter.

        Args:
            values: Parameter names and values.
            owner: Who received them, for the error message (``"FusionTool"``).

        Raises:
            ValueError: An unknown keyword, or an invalid value.
        """
        names = [f.name for f in cls.parameters()]
        unknown = sorted(set(values) - set(names))
        if unknown:
            raise ValueError(
                f"{owner} got unknown parameter(s) {', '.join(map(repr, unknown))}; "
                f"it takes {', '.join(names)}."
            )
        return cls(**values)

    def settings(self) -> dict[str, Any]:
        """The parameters as given (unset ones at their defaults)."""
        return {f.name: getattr(self, f.name) for f in self.parameters()}

    def __post_init__(self) -> None:
        if self.preset is not None:
            _check_literal("preset", self.preset, Preset)
        named = self.analysis_models is not None or self.model is not None
        preset = self.preset or ("quality" if named else default_preset())
        preset = PRESET_ALIASES.get(preset, preset)
        defaults = PRESETS[preset]

        panel = _panel(self.analysis_models) if self.analysis_models is not None else defaults.panel
        judge = _check_slug("model", self.model) if self.model is not None else defaults.judge
        synthesizer = (
            _check_slug("synthesis_model", self.synthesis_model)
            if self.synthesis_model is not None
            else judge
        )
        _check_int("max_tool_calls", self.max_tool_calls, 1, MAX_TOOL_CALLS)
        _check_int("min_responses", self.min_responses, 1, MAX_PANEL)
        _check_int("max_retries", self.max_retries, 0, MAX_RETRIES)
        if self.min_responses > len(panel):
            raise ValueError(
                f"min_responses={self.min_responses} can never be met by a panel of "
                f"{len(panel)}; name more analysis_models or lower min_responses."
            )
        if self.quorum_grace_s is not None:
            _check_number("quorum_grace_s", self.quorum_grace_s, low=0.0, high=None)
        if self.fallback_models is not None:
            object.__setattr__(self, "fallback_models", _fallbacks(self.fallback_models))
        if self.max_cost_usd is not None:
            _check_number("max_cost_usd", self.max_cost_usd, low=-math.inf, high=math.inf)
            if self.max_cost_usd < 0:
                raise ValueError(
                    f"max_cost_usd must be 0 or more US dollars; got {self.max_cost_usd!r}."
                )
        if self.max_completion_tokens is not None:
            _check_int("max_completion_tokens", self.max_completion_tokens, 1, None)
        if self.temperature is not None:
            _check_number("temperature", self.temperature, low=0.0, high=2.0)
        if self.reasoning is not None:
            _check_literal("reasoning", self.reasoning, ReasoningEffort)
        for name in ("timeout_s", "judge_timeout_s", "synthesis_timeout_s"):
            _check_number(name, getattr(self, name), low=0.0, high=None, open_low=True)
        if self.judge_web_tools is not None and not isinstance(self.judge_web_tools, bool):
            raise ValueError(
                f"judge_web_tools must be True, False or None; got {self.judge_web_tools!r}."
            )
        for name in ("synthesize", "web_tools", "stream_panel_tokens"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"{name} must be True or False; got {getattr(self, name)!r}.")

        if self.analysis_models is not None:
            object.__setattr__(self, "analysis_models", panel)
        object.__setattr__(self, "preset_used", preset)
        object.__setattr__(self, "panel", panel)
        object.__setattr__(self, "judge", judge)
        object.__setattr__(self, "synthesizer", synthesizer)


def _fallbacks(models: object) -> tuple[str, ...]:
    if isinstance(models, str) or not isinstance(models, Sequence | set | frozenset):
        raise ValueError(
            "fallback_models must be a list of model slugs such as ['openai/gpt-4o-mini']; "
            f"got {type(models).__name__}."
        )
    slugs = tuple(models)
    if len(slugs) > MAX_PANEL:
        raise ValueError(f"fallback_models may name at most {MAX_PANEL} models; got {len(slugs)}.")
    for slug in slugs:
        _check_slug("each fallback model", slug)
    return tuple(dict.fromkeys(slugs))


def _panel(models: object) -> tuple[str, ...]:
    if isinstance(models, str):
        raise ValueError("analysis_models must be a list of slugs, not a single string.")
    if not isinstance(models, Sequence | set | frozenset):
        raise ValueError(
            "analysis_models must be a list of model slugs such as "
            f"['openai/gpt-4o', 'deepseek/deepseek-v3.2']; got {type(models).__name__}."
        )
    panel = tuple(models)
    if not 1 <= len(panel) <= MAX_PANEL:
        raise ValueError(f"analysis_models must name 1 to {MAX_PANEL} models; got {len(panel)}.")
    for slug in panel:
        _check_slug("each analysis model", slug)
    duplicates = sorted({slug for slug in panel if panel.count(slug) > 1})
    if duplicates:
        raise ValueError(
            f"analysis_models lists {', '.join(duplicates)} more than once; "
            "name each model once (append '#2' to sample the same model twice)."
        )
    return panel


def _check_literal(name: str, value: object, options: object) -> None:
    allowed = get_args(options)
    if not isinstance(value, str) or value not in allowed:
        raise ValueError(f"{name} must be one of {', '.join(map(repr, allowed))}; got {value!r}.")


def _check_slug(name: str, slug: object) -> str:
    if not isinstance(slug, str) or not slug.strip():
        raise ValueError(f"{name} must be a non-empty model slug such as 'openai/gpt-4o'.")
    if slug != slug.strip():
        raise ValueError(f"{name} {slug!r} has surrounding whitespace; remove it.")
    return slug


def _check_int(name: str, value: object, low: int, high: int | None) -> None:
    bounds = f"from {low} to {high}" if high is not None else f"at least {low}"
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{name} must be an integer {bounds}; got {value!r}.")
    if value < low or (high is not None and value > high):
        raise ValueError(f"{name} must be {bounds}; got {value}.")


def _check_number(
    name: str, value: object, *, low: float, high: float | None, open_low: bool = False
) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ValueError(f"{name} must be a finite number; got {value!r}.")
    if (value <= low if open_low else value < low) or (high is not None and value > high):
        if high is None:
            raise ValueError(f"{name} must be a positive number of seconds; got {value!r}.")
        raise ValueError(f"{name} must be from {low:g} to {high:g}; got {value!r}.")
