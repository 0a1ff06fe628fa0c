"""The run parameters of the tool, the plugin and the alias, derived from ``FusionContext``."""

from __future__ import annotations

import uuid
from typing import Any, ClassVar

from langchain_core.runnables import RunnableConfig
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, model_validator

from langfusion.graph.context import FusionContext
from langfusion.graph.fusion import FusionGraph, build_fusion_graph
from langfusion.graph.models import ModelFactory

PARAMETER_NAMES = frozenset(f.name for f in FusionContext.parameters())


class FusionParameters(BaseModel):
    """A ``FusionContext`` built from the constructor's keywords, and the graph that runs it.

    Every ``FusionContext`` parameter is a keyword of the subclass (``FusionTool(preset=
    "budget", web_tools=False)``); an unknown keyword raises ``ValueError`` naming it.
    The graph is built once per instance and shared by its runs.
    """

    model_config = ConfigDict(arbitrary_types_allowed=True)

    # What a subclass sets when the caller does not (the tool leaves the answer to its caller).
    context_defaults: ClassVar[dict[str, Any]] = {}

    context: FusionContext = Field(exclude=True)
    model_factory: ModelFactory | None = Field(default=None, exclude=True)

    _graph: FusionGraph | None = PrivateAttr(default=None)

    @model_validator(mode="before")
    @classmethod
    def _collect_context(cls, data: Any) -> Any:
        if not isinstance(data, dict) or isinstance(data.get("context"), FusionContext):
            return data
        own = {k: v for k, v in data.items() if k in cls.model_fields and k != "context"}
        given = {k: v for k, v in data.items() if k not in own}
        unknown = sorted(set(given) - PARAMETER_NAMES)
        if unknown:
            raise ValueError(
                f"{cls.__name__} got unknown parameter(s) {', '.join(map(repr, unknown))}; "
                f"the run parameters are {', '.join(sorted(PARAMETER_NAMES))} "
                "(see FusionContext)."
            )
        settings = cls.context_settings(own, {**cls.context_defaults, **given})
        return {**own, "context": FusionContext.from_parameters(settings, owner=cls.__name__)}

    @classmethod
    def context_settings(cls, own: dict[str, Any], given: dict[str, Any]) -> dict[str, Any]:
        """The run parameters, given the subclass's own keywords (``own``) too."""
        return given

    @staticmethod
    def run_config(config: RunnableConfig | None) -> RunnableConfig:
        """``config`` with a fresh ``fusion_id`` in its metadata, so the root run carries it."""
        config = config or RunnableConfig()
        metadata = {"fusion_id": str(uuid.uuid4()), **(config.get("metadata") or {})}
        return RunnableConfig(**{**config, "metadata": metadata})

    @property
    def graph(self) -> FusionGraph:
        """The compiled pipeline these parameters run, with the default web tools."""
        if self._graph is None:
            from langfusion.tools.web import web_tools

            self._graph = build_fusion_graph(model_factory=self.model_factory, web_tools=web_tools)
        return self._graph
