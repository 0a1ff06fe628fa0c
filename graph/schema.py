"""What the judge must produce and what a fusion returns."""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_serializer

from langfusion.graph.projection import CostProjection
from langfusion.graph.reasons import (
    FailureReason,
    JudgeFailure,
    PanelFailureReason,
    RunFailureReason,
)

__all__ = [
    "Analysis",
    "AnalysisMeta",
    "Citation",
    "Contradiction",
    "DroppedCitation",
    "FailedModel",
    "FailureReason",
    "FusionResult",
    "JudgeFailure",
    "JudgeVerdict",
    "PanelFailureReason",
    "PanelResponse",
    "PartialCoverage",
    "RunFailureReason",
    "RunUsage",
    "Stance",
    "Step",
    "UniqueInsight",
    "Usage",
]


class Usage(BaseModel):
    """Token counts of one or more model calls, and what they cost where that is known.

    ``cost`` is in US dollars: what the provider reported (OpenRouter's
    ``usage.cost``; ``cost_source: "provider"``), else the tokens at the
    slug's known price (``cost_source: "price_table"``). A sum is
    ``"price_table"`` as soon as one of its costs is. Both are ``None``, and
    left out of the JSON, when no cost is known.
    """

    model_config = ConfigDict(frozen=True)

    input_tokens: int = 0
    output_tokens: int = 0
    total_tokens: int = 0
    # In the JSON only where a cost is known.
    cost: float | None = Field(default=None, exclude_if=lambda cost: cost is None)
    cost_source: Literal["provider", "price_table"] | None = Field(
        default=None, exclude_if=lambda source: source is None
    )

    def __add__(self, other: Usage) -> Usage:
        costs = [c for c in (self.cost, other.cost) if c is not None]
        sources = {u.cost_source for u in (self, other) if u.cost is not None}
        return Usage(
            input_tokens=self.input_tokens + other.input_tokens,
            output_tokens=self.output_tokens + other.output_tokens,
            total_tokens=self.total_tokens + other.total_tokens,
            cost=sum(costs) if costs else None,
            cost_source=(
                None if not costs else "provider" if sources == {"provider"} else "price_table"
            ),
        )

    @staticmethod
    def with_cost(usage: Usage | None, cost: float | None) -> Usage | None:
        """``usage`` with the reported ``cost`` of its calls (as it is for a ``None`` cost)."""
        if cost is None:
            return usage
        return (usage or Usage()).model_copy(update={"cost": cost, "cost_source": "provider"})

    @classmethod
    def total(cls, usages: Iterable[Usage | None]) -> Usage:
        """Sum ``usages``, skipping the missing ones."""
        result = cls()
        for usage in usages:
            if usage is not None:
                result = result + usage
        return result

    @classmethod
    def from_metadata(cls, metadata: Mapping[str, Any] | None) -> Usage | None:
        """Read a LangChain ``usage_metadata`` mapping; ``None`` when the provider sent none."""
        if not metadata:
            return None
        return cls(
            input_tokens=int(metadata.get("input_tokens", 0)),
            output_tokens=int(metadata.get("output_tokens", 0)),
            total_tokens=int(metadata.get("total_tokens", 0)),
        )


# The analysis sections whose entries cite panelists.
CitedSection = Literal["contradictions", "partial_coverage", "unique_insights"]

# A label the judge wrote in free text ("Response B says ..."), named by its slug.
_LABEL_MENTION = re.compile(r"\bResponse [A-Z]\b")

# Marks the fields that name a panelist: the judge's per-run schema turns each
# into an ``enum`` of that run's labels (``judge.judge_schema``).
_LABEL_FIELD: dict[str, Any] = {"x-panel-label": True}


class Stance(BaseModel):
    """One model's position on a contested topic."""

    model: str = Field(
        description="The response label, e.g. 'Response A'.", json_schema_extra=_LABEL_FIELD
    )
    stance: str = Field(description="What that response claims about the topic.")


class Contradiction(BaseModel):
    """A topic on which responses disagree."""

    topic: str = Field(description="What the disagreement is about.")
    stances: list[Stance] = Field(description="Each disagreeing response and its position.")


class PartialCoverage(BaseModel):
    """A point made by some responses and missing from the others."""

    models: list[Annotated[str, Field(json_schema_extra=_LABEL_FIELD)]] = Field(
        description="Labels of the responses that make the point."
    )
    point: str = Field(description="The point.")


class UniqueInsight(BaseModel):
    """Something only one response saw."""

    model: str = Field(
        description="Label of the one response that makes it.", json_schema_extra=_LABEL_FIELD
    )
    insight: str = Field(description="The insight.")


class Analysis(BaseModel):
    """The judge's comparison of the panel answers."""

    consensus: list[str] = Field(description="Claims every response agrees on.")
    contradictions: list[Contradiction] = Field(description="Where responses disagree.")
    partial_coverage: list[PartialCoverage] = Field(
        description="Points some but not all responses cover."
    )
    unique_insights: list[UniqueInsight] = Field(description="Points only one response makes.")
    blind_spots: list[str] = Field(description="What no response addressed but should have.")

    def relabel(self, names: Mapping[str, str]) -> Analysis:
        """Replace response labels with the model slugs they stand for.

        A citation of anything but a label in ``names`` is dropped; see ``attributed``.
        """
        return self.attributed(names)[0]

    def attributed(self, names: Mapping[str, str]) -> tuple[Analysis, list[DroppedCitation]]:
        """Map labels to slugs, dropping every citation that names no panelist.

        Only an exact label (surrounding spaces aside) counts: ``Response Z``,
        ``response b`` or a slug the judge never saw match no panelist. An
        entry left with no valid attribution is dropped whole.

        Args:
            names: Label -> slug, for this run's panel.

        Returns:
            The analysis in slugs, and the citations that were dropped.
        """
        dropped: list[DroppedCitation] = []

        def text(value: str) -> str:
            return _LABEL_MENTION.sub(lambda m: names.get(m.group(0), m.group(0)), value).strip()

        def name(label: str, section: CitedSection) -> str | None:
            slug = names.get(label.strip())
            if slug is None:
                dropped.append(DroppedCitation(section=section, cited=label))
            return slug

        contradictions = []
        for c in self.contradictions:
            stances = [
                Stance(model=slug, stance=text(s.stance))
                for s in c.stances
                if (slug := name(s.model, "contradictions")) is not None
            ]
            if stances:
                contradictions.append(Contradiction(topic=text(c.topic), stances=stances))
        partial = []
        for p in self.partial_coverage:
            cited = [slug for m in p.models if (slug := name(m, "partial_coverage")) is not None]
            if cited:
                partial.append(
                    PartialCoverage(models=list(dict.fromkeys(cited)), point=text(p.point))
                )
        unique = [
            UniqueInsight(model=slug, insight=text(u.insight))
            for u in self.unique_insights
            if (slug := name(u.model, "unique_insights")) is not None
        ]
        analysis = Analysis(
            consensus=[t for c in self.consensus if (t := text(c))],
            contradictions=contradictions,
            partial_coverage=partial,
            unique_insights=unique,
            blind_spots=[t for b in self.blind_spots if (t := text(b))],
        )
        return analysis, dropped


class _Reasoning(BaseModel):
    reasoning: str = Field(
        description="Brief notes comparing the responses, written before the verdict fields."
    )


class JudgeVerdict(Analysis, _Reasoning):
    """What the judge model writes: its reasoning first, then the analysis."""

    def analysis(self) -> Analysis:
        """The verdict without the reasoning."""
        return Analysis.model_validate(self.model_dump(exclude={"reasoning"}))


class DroppedCitation(BaseModel):
    """A model name the judge wrote that matches no panelist; the citation was removed."""

    section: CitedSection
    cited: str


class AnalysisMeta(BaseModel):
    """How far the analysis can be trusted: what was compared and what was corrected.

    Attributes:
        responses_compared: Panel answers the judge compared.
        degraded: ``"single_response"`` when it compared one answer (its
            consensus and contradictions are then not a comparison), else ``None``.
        dropped_citations: Citations of models that were not on the panel, removed.
        dropped_entries: Entries that said nothing, removed: an echo of the judge's
            prompt, or fewer than two words once response labels and model
            slugs are taken out ("Response B", ":{", a bare "Yes").
        repaired: The judge's output was not clean JSON and was repaired.
    """

    responses_compared: int
    degraded: Literal["single_response"] | None = None
    dropped_citations: list[DroppedCitation] = Field(default_factory=list)
    dropped_entries: int = 0
    repaired: bool = False


class Citation(BaseModel):
    """A page the panel or the judge fetched or cited, and who used it."""

    url: str
    title: str | None = None
    models: list[str] = Field(default_factory=list)


class PanelResponse(BaseModel):
    """One panel model's answer."""

    model: str
    content: str
    usage: Usage | None = None
    latency_s: float | None = None
    tool_calls: int = 0
    # The answer stopped at its token cap (finish_reason "length"); in the JSON only then.
    truncated: bool = Field(default=False, exclude_if=lambda cut: not cut)
    # The failed panel model this fallback answered for; in the JSON only then.
    fallback_for: str | None = Field(default=None, exclude_if=lambda slug: slug is None)


class FailedModel(BaseModel):
    """A panel model that gave no usable answer, and why."""

    model: str
    error: str
    failure_reason: PanelFailureReason
    status_code: int | None = None
    # The fallback that took its place on the panel.
    replaced_by: str | None = None

    @model_serializer(mode="wrap")
    def _without_unseen_status(self, handler: Any) -> dict[str, Any]:
        data: dict[str, Any] = handler(self)
        for key in ("status_code", "replaced_by"):
            if data.get(key) is None:
                data.pop(key, None)
        return data


# The steps of a run that call models.
Step = Literal["panel", "judge", "synthesis"]


class RunUsage(BaseModel):
    """Token usage of a whole fusion, by step.

    ``unreported`` names the steps with a call whose provider sent no token
    counts (llama.cpp's server sends none on a streamed reply): their figures
    leave that call out. In the JSON only when there is one.
    """

    panel: Usage = Field(default_factory=Usage)
    judge: Usage = Field(default_factory=Usage)
    synthesis: Usage = Field(default_factory=Usage)
    total: Usage = Field(default_factory=Usage)
    unreported: list[Step] = Field(default_factory=list, exclude_if=lambda steps: not steps)


class FusionResult(BaseModel):
    """The result of a fusion, in the hosted tool's JSON shape plus additive fields.

    ``status == "ok"`` carries ``analysis`` (``None`` when the judge failed,
    with ``failure_reason`` saying why), the raw ``responses`` and the
    ``failed_models``. ``status == "error"`` carries ``error`` (for a person)
    and ``failure_reason`` (for code), and still lists ``failed_models``.
    """

    status: Literal["ok", "error"]
    analysis: Analysis | None = None
    responses: list[PanelResponse] = Field(default_factory=list)
    failed_models: list[FailedModel] = Field(default_factory=list)
    error: str | None = None
    failure_reason: RunFailureReason | None = None
    judge_model: str | None = None
    judge_usage: Usage | None = None
    usage: RunUsage = Field(default_factory=RunUsage)
    analysis_meta: AnalysisMeta | None = None
    citations: list[Citation] = Field(default_factory=list)
    # The synthesis stopped at its token cap; in the JSON only then.
    answer_truncated: bool = Field(default=False, exclude_if=lambda cut: not cut)
    # The worst case a budget refused the run for (budget_exceeded); in the JSON only then.
    cost_projection: CostProjection | None = None

    @model_serializer(mode="wrap")
    def _spec_shape(self, handler: Any) -> dict[str, Any]:
        data: dict[str, Any] = handler(self)
        for key in (
            "error",
            "failure_reason",
            "judge_model",
            "judge_usage",
            "analysis_meta",
            "cost_projection",
        ):
            if data.get(key) is None:
                data.pop(key, None)
        if self.status == "error" and self.analysis is None:
            data.pop("analysis", None)
        return data

    def to_json(self) -> str:
        """The result as the SPEC's JSON text."""
        return json.dumps(self.model_dump(mode="json"), ensure_ascii=False)

    @classmethod
    def failure(
        cls,
        error: str,
        failure_reason: RunFailureReason,
        *,
        failed_models: list[FailedModel] | None = None,
        responses: list[PanelResponse] | None = None,
    ) -> FusionResult:
        """An error result: nothing usable came out of the run."""
        return cls(
            status="error",
            error=error,
            failure_reason=failure_reason,
            failed_models=failed_models or [],
            responses=responses or [],
        )
