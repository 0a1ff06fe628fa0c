"""Recursion protection and the identity a run gives its model calls.

A fusion run knows its depth: the ``depth`` input, the ``x-fusion-depth``
header a server was sent, or, in process, the depth of the fusion whose node
is running (``ACTIVE_DEPTH``). Every model call it makes carries ``depth + 1``
in that header and in its trace metadata.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any, Literal

from langchain_core.runnables import RunnableConfig
from langgraph.constants import TAG_NOSTREAM

from langfusion.graph.models import DEPTH_HEADER

Role = Literal["panel", "judge", "synthesis"]

# Depth of the fusion run whose node is executing in this context. Anything
# started from inside a node (a model, a tool, a nested graph) inherits it,
# which is how a nested fusion finds out that it is nested.
ACTIVE_DEPTH: ContextVar[int | None] = ContextVar("langfusion_active_depth", default=None)


@contextmanager
def active(depth: int) -> Iterator[None]:
    """Mark the code in this block as running inside a fusion at ``depth``."""
    token = ACTIVE_DEPTH.set(depth)
    try:
        yield
    finally:
        ACTIVE_DEPTH.reset(token)


def header_depth(configurable: dict[str, Any]) -> int:
    """The depth a server was told through ``x-fusion-depth`` (passed as a configurable)."""
    raw = configurable.get(DEPTH_HEADER)
    try:
        return max(0, int(str(raw).strip())) if raw is not None else 0
    except ValueError:
        return 1  # an unreadable depth header is treated as nested: refuse, don't recurse


def run_depth(given: int, config: RunnableConfig) -> int:
    """The depth a run starts at: as given, below a fusion it runs in, or as a header says."""
    parent = ACTIVE_DEPTH.get()
    return max(
        given,
        0 if parent is None else parent + 1,
        header_depth(config.get("configurable") or {}),
    )


def child_config(
    depth: int, fusion_id: str, role: Role, slug: str, *, nostream: bool
) -> RunnableConfig:
    """The config of one model call: its trace name, tags and fusion metadata."""
    return RunnableConfig(
        run_name=slug,
        tags=[f"fusion:{role}", *([TAG_NOSTREAM] if nostream else [])],
        metadata={
            "fusion_role": role,
            "fusion_model": slug,
            "fusion_depth": depth,
            "fusion_id": fusion_id,
        },
    )
