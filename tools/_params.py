"""The SPEC parameters shared by the fusion tool and the model alias."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any

from langchain_core.runnables import RunnableConfig
from langgraph.graph.state import CompiledStateGraph
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr

from langfusion.graph.context import FusionContext, Preset, ReasoningEffort
from langfusion.graph.fusion import build_fusion_graph
from langfusion.graph.models import ModelFactory


class FusionParameters(BaseModel):
    """Panel, judge and call settings, checked at construction; the graph is built once."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    analysis_models: Sequence[str] | None = None
    model: str | None = None
    max_tool_calls: int = 8
    max_completion_tokens: int | None = None
    temperature: float | None = None
    reasoning: ReasoningEffort | None = None
    preset: Preset | None = None
    timeout_s: float = 180.0
    model_factory: ModelFactory | None = Field(default=None, exclude=True)

    _graph: CompiledStateGraph[Any, Any, Any, Any] | None = PrivateAttr(default=None)

    def model_post_init(self, context: Any, /) -> None:
        """Check the parameters now, before any model is called."""
        self.fusion_context()

    def fusion_context(self, **overrides: Any) -> FusionContext:
        """The run configuration these parameters describe."""
        return FusionContext(
            analysis_models=self.analysis_models,
            model=self.model,
            max_tool_calls=self.max_tool_calls,
            max_completion_tokens=self.max_completion_tokens,
            temperature=self.temperature,
            reasoning=self.reasoning,
            preset=self.preset,
            timeout_s=self.timeout_s,
            **overrides,
        )

    @staticmethod
    def run_config(config: RunnableConfig | None) -> RunnableConfig:
        """``config`` with a fresh ``fusion_id`` in its metadata, so the root run carries it."""
        config = config or RunnableConfig()
        metadata = {"fusion_id": str(uuid.uuid4()), **(config.get("metadata") or {})}
        return RunnableConfig(**{**config, "metadata": metadata})

    @property
    def graph(self) -> CompiledStateGraph[Any, Any, Any, Any]:
        """The compiled pipeline these parameters run."""
        if self._graph is None:
            self._graph = build_fusion_graph(model_factory=self.model_factory)
        return self._graph
