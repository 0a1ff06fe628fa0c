"""Quorum and grace, and fallback panelists: what one run's panel branches share.

LangGraph runs a superstep's ``Send`` branches until every one of them ends, so
a panelist still running once the quorum is in cannot be left behind by the
graph: each ``analyze`` branch must end itself. The branches of one run share
a :class:`PanelRound`, found by the run's own key (made by ``prepare``, carried
in each ``Send`` payload): every answer counts toward ``min_responses``; once
the quorum is in, a timer of ``quorum_grace_s`` starts, and when it fires every
branch still waiting on its model cancels the call (its connection closes) and
ends as ``cut_after_quorum``. The same round hands out ``fallback_models`` to
branches whose model failed for good, each fallback once.

Why not another design: a round lives in process memory, beside the run's
tasks, and goes when its branches let it go (a weak map), so nothing of it is
checkpointed (a ``Send`` payload is, and an ``asyncio.Event`` cannot be) and
nothing of one run is visible to another. The drawing of the graph is
unchanged: the cut is each branch ending early, which the edges already say.
A run resumed from a checkpoint in a new process starts a fresh round for the
branches it re-runs.
"""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import Awaitable, Sequence
from dataclasses import dataclass, field
from typing import TypeVar

from langfusion.graph.errors import CutAfterQuorumError

__all__ = ["CutAfterQuorumError", "PanelRound", "panel_round"]

T = TypeVar("T")


@dataclass(eq=False)
class PanelRound:
    """One run's panel branches: answers counted, the grace timer, fallbacks handed out."""

    needed: int
    grace_s: float | None
    fallbacks: list[str] = field(default_factory=list)
    answered: int = 0
    _cut: asyncio.Event = field(default_factory=asyncio.Event)
    _timer: asyncio.TimerHandle | None = None

    def answered_one(self) -> None:
        """One more answer is in; with the quorum reached, the grace period starts."""
        self.answered += 1
        if self.grace_s is None or self._timer is not None or self.answered < self.needed:
            return
        self._timer = asyncio.get_running_loop().call_later(self.grace_s, self._cut.set)

    def next_fallback(self) -> str | None:
        """The next fallback slug nobody has used yet (each is used at most once)."""
        return self.fallbacks.pop(0) if self.fallbacks else None

    async def unless_cut(self, call: Awaitable[T]) -> T:
        """``call``'s result, unless the grace after the quorum ends first.

        Raises:
            CutAfterQuorumError: The grace ended first; ``call`` was cancelled.
        """
        if self.grace_s is None:
            return await call
        if self._cut.is_set():
            raise CutAfterQuorumError("cut: the quorum was in and its grace had ended")
        task = asyncio.ensure_future(call)
        cut = asyncio.ensure_future(self._cut.wait())
        try:
            await asyncio.wait({task, cut}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            cut.cancel()
        if task.done():
            return task.result()
        task.cancel()
        try:
            await task
        except asyncio.CancelledError:
            pass
        raise CutAfterQuorumError(
            f"cut after the quorum: {self.answered} answers were in and the "
            f"quorum_grace_s={self.grace_s:g}s grace had ended"
        )


_ROUNDS: weakref.WeakValueDictionary[str, PanelRound] = weakref.WeakValueDictionary()


def panel_round(
    key: str, *, needed: int, grace_s: float | None, fallbacks: Sequence[str]
) -> PanelRound:
    """The round of the run whose key is ``key`` (made on first use by one of its branches)."""
    found = _ROUNDS.get(key)
    if found is None:
        found = PanelRound(needed, grace_s, list(fallbacks))
        _ROUNDS[key] = found
    return found
