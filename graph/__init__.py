"""The fusion pipeline: a panel of models answers, a judge compares, a synthesis answers.

Build the graph with ``build_fusion_graph`` and run it with a ``FusionContext``::

    graph = build_fusion_graph()
    out = await graph.ainvoke(
        {"messages": [HumanMessage("Where do economists disagree about a carbon tax?")]},
        context=FusionContext(analysis_models=["~openai/gpt-latest", "deepseek/deepseek-v3.2"]),
    )
    out["result"], out["answer"]

Imports are lazy: reading a result (``langfusion.graph.schema``) loads no
model stack and compiles no graph.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from langfusion.graph.context import PRESETS, FusionContext, Preset, default_preset
    from langfusion.graph.cost import aestimate_cost, estimate_cost
    from langfusion.graph.depth import ACTIVE_DEPTH
    from langfusion.graph.errors import MissingAPIKeyError
    from langfusion.graph.fusion import FusionGraph, build_fusion_graph
    from langfusion.graph.models import (
        DEPTH_HEADER,
        ModelFactory,
        ModelRegistry,
        ModelTraits,
        PricesModels,
        Pricing,
        default_registry,
        register_model,
    )
    from langfusion.graph.projection import CostProjection, ProjectedCall
    from langfusion.graph.render import result_markdown
    from langfusion.graph.schema import (
        Analysis,
        AnalysisMeta,
        Citation,
        Contradiction,
        DroppedCitation,
        FailedModel,
        FusionResult,
        JudgeVerdict,
        PanelResponse,
        PartialCoverage,
        RunUsage,
        Stance,
        UniqueInsight,
        Usage,
    )
    from langfusion.graph.state import FusionInput, FusionOutput, FusionState
    from langfusion.graph.verdict import judge_schema

_HOMES = {
    "ACTIVE_DEPTH": "depth",
    "DEPTH_HEADER": "models",
    "PRESETS": "context",
    "Analysis": "schema",
    "AnalysisMeta": "schema",
    "Citation": "schema",
    "Contradiction": "schema",
    "CostProjection": "projection",
    "DroppedCitation": "schema",
    "FailedModel": "schema",
    "FusionContext": "context",
    "FusionGraph": "fusion",
    "FusionInput": "state",
    "FusionOutput": "state",
    "FusionResult": "schema",
    "FusionState": "state",
    "JudgeVerdict": "schema",
    "MissingAPIKeyError": "errors",
    "ModelFactory": "models",
    "ModelRegistry": "models",
    "PanelResponse": "schema",
    "PartialCoverage": "schema",
    "Preset": "context",
    "Pricing": "models",
    "PricesModels": "models",
    "ProjectedCall": "projection",
    "RunUsage": "schema",
    "Stance": "schema",
    "UniqueInsight": "schema",
    "Usage": "schema",
    "aestimate_cost": "cost",
    "build_fusion_graph": "fusion",
    "estimate_cost": "cost",
    "default_preset": "context",
    "default_registry": "models",
    "judge_schema": "verdict",
    "register_model": "models",
    "ModelTraits": "models",
    "result_markdown": "render",
}

__all__ = [
    "ACTIVE_DEPTH",
    "Analysis",
    "AnalysisMeta",
    "Citation",
    "Contradiction",
    "CostProjection",
    "DEPTH_HEADER",
    "DroppedCitation",
    "FailedModel",
    "FusionContext",
    "FusionGraph",
    "FusionInput",
    "FusionOutput",
    "FusionResult",
    "FusionState",
    "JudgeVerdict",
    "MissingAPIKeyError",
    "ModelFactory",
    "ModelRegistry",
    "ModelTraits",
    "PRESETS",
    "PanelResponse",
    "PartialCoverage",
    "Preset",
    "PricesModels",
    "Pricing",
    "ProjectedCall",
    "RunUsage",
    "Stance",
    "UniqueInsight",
    "Usage",
    "aestimate_cost",
    "build_fusion_graph",
    "default_preset",
    "default_registry",
    "estimate_cost",
    "judge_schema",
    "register_model",
    "result_markdown",
]


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module 'langfusion.graph' has no attribute {name!r}")
    value = getattr(import_module(f"langfusion.graph.{home}"), name)
    globals()[name] = value
    return value
