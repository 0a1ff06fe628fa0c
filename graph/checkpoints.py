"""How a fusion's state is checkpointed: as plain data.

The nodes pass pydantic models around (a ``PanelResponse``, the ``Analysis``,
the ``FusionResult``). Written to a checkpoint as they are, each would be a
class that LangGraph's serializer must import to read the checkpoint back,
which it warns "will be blocked in a future version" (and blocks now under
``LANGGRAPH_STRICT_MSGPACK=true`` for any type the graph does not declare).
:class:`PlainCheckpoints` writes them as tagged JSON data instead and turns
them back into the same models on reading, so a checkpoint holds only
LangChain messages and plain data, and a durable run resumes in any process
whatever the serializer allows.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable
from typing import Any, TypeVar

from langgraph.checkpoint.base import BaseCheckpointSaver
from langgraph.checkpoint.serde.base import SerializerProtocol
from langgraph.checkpoint.serde.jsonplus import JsonPlusSerializer
from langgraph.types import Overwrite
from pydantic import BaseModel

from langfusion.graph import schema

__all__ = ["PlainCheckpoints", "plain_checkpoints"]

_TAG = "__langfusion__"
_MODULE = schema.__name__
S = TypeVar("S", bound=BaseCheckpointSaver[Any])


def plain(value: Any) -> Any:
    """``value`` with every langfusion result model in it replaced by tagged plain data."""
    if isinstance(value, BaseModel):
        if type(value).__module__ != _MODULE:
            return value  # a message: LangGraph's serializer knows it
        return {_TAG: type(value).__name__, "data": value.model_dump(mode="json")}
    if isinstance(value, list):
        return [plain(item) for item in value]
    if type(value) is tuple:
        return tuple(plain(item) for item in value)
    if isinstance(value, dict):
        return {key: plain(item) for key, item in value.items()}
    if isinstance(value, Overwrite):
        return Overwrite(plain(value.value))
    return value


def revived(value: Any) -> Any:
    """The inverse of :func:`plain`."""
    if isinstance(value, dict):
        if set(value) == {_TAG, "data"}:
            model: type[BaseModel] = getattr(schema, value[_TAG])
            return model.model_validate(value["data"])
        return {key: revived(item) for key, item in value.items()}
    if isinstance(value, list):
        return [revived(item) for item in value]
    if type(value) is tuple:
        return tuple(revived(item) for item in value)
    if isinstance(value, Overwrite):
        return Overwrite(revived(value.value))
    return value


class PlainCheckpoints(JsonPlusSerializer):
    """A checkpoint serializer that stores langfusion's models as plain data.

    It wraps the checkpointer's own serializer, which writes the bytes. It is
    a ``JsonPlusSerializer`` only so that LangGraph hands it the allowlist of
    strict msgpack mode (which it passes on to the serializer it wraps).

    Args:
        inner: The serializer that writes the bytes (the checkpointer's own).
    """

    def __init__(self, inner: SerializerProtocol) -> None:
        self.inner = inner

    def __getattr__(self, name: str) -> Any:
        if name == "inner":  # not set yet (a copy being made)
            raise AttributeError(name)
        return getattr(self.inner, name)

    def dumps_typed(self, obj: Any) -> tuple[str, bytes]:
        """Serialize ``obj`` with its langfusion models as plain data."""
        return self.inner.dumps_typed(plain(obj))

    def loads_typed(self, data: tuple[str, bytes]) -> Any:
        """Deserialize, turning the plain data back into langfusion's models."""
        return revived(self.inner.loads_typed(data))

    def with_msgpack_allowlist(
        self, extra_allowlist: Iterable[tuple[str, ...] | type]
    ) -> PlainCheckpoints:
        """The same, over the inner serializer with a wider allowlist (strict msgpack)."""
        widen = getattr(self.inner, "with_msgpack_allowlist", None)
        widened = self.inner if widen is None else widen(extra_allowlist)
        return self if widened is self.inner else PlainCheckpoints(widened)


def plain_checkpoints(saver: S) -> S:
    """A shallow copy of ``saver`` (as ``with_allowlist`` makes) that writes plain data."""
    if isinstance(saver.serde, PlainCheckpoints):
        return saver
    clone = copy.copy(saver)
    clone.serde = PlainCheckpoints(saver.serde)
    return clone
