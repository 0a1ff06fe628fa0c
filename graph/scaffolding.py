"""Analysis text that only repeats langfusion's own judge prompt, removed.

A small judge (the embedded base model) copies its prompt into the fields it
fills: its instructions ("what none of the answers addresses but a careful
expert would") or its tags (``<response>``). That is scaffolding, never a
finding. An item holding a run of ``_RUN`` words from the judge's prompt or
schema, or one of its tags, is dropped.
"""

from __future__ import annotations

import functools
import json
import re

from langfusion.graph import prompts
from langfusion.graph.schema import Analysis, JudgeVerdict

_RUN = 8
_WORD = re.compile(r"[a-z0-9']+")
_PLACEHOLDER = re.compile(r"\{[a-z_]+\}")
_PROMPT_TAG = re.compile(
    r"<\s*/?\s*(?:response|question|instructions|analysis|citation|verification_notes)",
    re.IGNORECASE,
)


def _words(text: str) -> list[str]:
    return _WORD.findall(text.lower())


@functools.cache
def _prompt_runs() -> frozenset[tuple[str, ...]]:
    sources = [
        prompts.JUDGE_SYSTEM,
        prompts.JUDGE_USER,
        prompts.JUDGE_SINGLE,
        prompts.JUDGE_VERIFY,
        prompts.JUDGE_NOTES,
        prompts.ASKER_INSTRUCTIONS,
        json.dumps(JudgeVerdict.model_json_schema()),
    ]
    runs: set[tuple[str, ...]] = set()
    for source in sources:
        words = _words(_PLACEHOLDER.sub(" ", source))
        runs |= {tuple(words[i : i + _RUN]) for i in range(len(words) - _RUN + 1)}
    return frozenset(runs)


def echoes_prompt(text: str) -> bool:
    """Whether ``text`` holds a tag or a run of words copied from the judge's prompt or schema."""
    if _PROMPT_TAG.search(text):
        return True
    words = _words(text)
    runs = _prompt_runs()
    return any(tuple(words[i : i + _RUN]) in runs for i in range(len(words) - _RUN + 1))


def without_echoes(analysis: Analysis) -> Analysis:
    """``analysis`` without the items that only repeat the judge's instructions."""
    keep = [c for c in analysis.contradictions if not echoes_prompt(c.topic)]
    return Analysis(
        consensus=[c for c in analysis.consensus if not echoes_prompt(c)],
        contradictions=[
            c.model_copy(update={"stances": stances})
            for c in keep
            if (stances := [s for s in c.stances if not echoes_prompt(s.stance)])
        ],
        partial_coverage=[p for p in analysis.partial_coverage if not echoes_prompt(p.point)],
        unique_insights=[u for u in analysis.unique_insights if not echoes_prompt(u.insight)],
        blind_spots=[b for b in analysis.blind_spots if not echoes_prompt(b)],
    )
