"""The provider wing: a model slug becomes a chat model, and nothing else.

The pipeline reaches providers only through this door: a :class:`ModelFactory`
(``default_registry`` unless a caller injects its own), the traits a built
model carries, the per-call deadline and the depth header, and what a slug
costs (:class:`Pricing`, from a factory that is :class:`PricesModels`).
"""

from langfusion.graph.models.factory import ModelFactory, ReadiesModels
from langfusion.graph.models.openrouter import offered_server_tools
from langfusion.graph.models.pools import BoundedCache, close_loop_pools
from langfusion.graph.models.pricing import PricesModels, Pricing
from langfusion.graph.models.registry import (
    DEPTH_HEADER,
    LOCAL_PREFIX,
    MODEL_CACHE_SIZE,
    ModelRegistry,
    cancellable,
    default_registry,
    register_model,
)
from langfusion.graph.models.traits import ModelTraits, StructuredMethod
from langfusion.graph.models.transport import CallRecord, call_deadline

__all__ = [
    "DEPTH_HEADER",
    "LOCAL_PREFIX",
    "MODEL_CACHE_SIZE",
    "BoundedCache",
    "CallRecord",
    "ModelFactory",
    "ModelRegistry",
    "ModelTraits",
    "PricesModels",
    "Pricing",
    "ReadiesModels",
    "StructuredMethod",
    "call_deadline",
    "cancellable",
    "close_loop_pools",
    "default_registry",
    "offered_server_tools",
    "register_model",
]
