"""The fusion pipeline: a panel of models answers, a judge compares, a synthesis answers.

Build the graph with ``build_fusion_graph`` (or use ``fusion_graph``) and run
it with a ``FusionContext``::

    out = await fusion_graph.ainvoke(
        {"messages": [HumanMessage("Where do economists disagree about a carbon tax?")]},
        context=FusionContext(analysis_models=["~openai/gpt-latest", "deepseek/deepseek-v3.2"]),
    )
    out["result"], out["answer"]
"""

from langfusion.graph.context import PRESETS, FusionContext, Preset, default_preset
from langfusion.graph.errors import MissingAPIKeyError
from langfusion.graph.fusion import ACTIVE_DEPTH, build_fusion_graph, fusion_graph, judge_schema
from langfusion.graph.models import (
    DEPTH_HEADER,
    ModelFactory,
    ModelRegistry,
    default_registry,
    register_model,
)
from langfusion.graph.schema import (
    Analysis,
    Contradiction,
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

__all__ = [
    "ACTIVE_DEPTH",
    "DEPTH_HEADER",
    "PRESETS",
    "Analysis",
    "Contradiction",
    "FailedModel",
    "FusionContext",
    "FusionInput",
    "FusionOutput",
    "FusionResult",
    "FusionState",
    "JudgeVerdict",
    "MissingAPIKeyError",
    "ModelFactory",
    "ModelRegistry",
    "PanelResponse",
    "PartialCoverage",
    "Preset",
    "RunUsage",
    "Stance",
    "UniqueInsight",
    "Usage",
    "build_fusion_graph",
    "default_preset",
    "default_registry",
    "fusion_graph",
    "judge_schema",
    "register_model",
]
