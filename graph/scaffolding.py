"""Analysis entries that say nothing, removed and counted, whatever model judged.

A small judge (the embedded base model) copies its prompt into the fields it
fills: its instructions ("what none of the answers addresses but a careful
expert would") or its tags (``<response>``). That is scaffolding, never a
finding. An item holding a run of ``_RUN`` words from the judge's prompt or
schema, or one of its tags, is dropped. So is an item left with fewer than
two words once response labels and model slugs are taken out ("Response B",
"local/gemma-3-270m#2", ":{", a bare "Yes", "2.5"): a label or a slug stands
for a model, not for a point, and a word needs a letter.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Sequence

from langfusion.graph import prompts
from langfusion.graph.schema import Analysis, JudgeVerdict

_RUN = 8
_WORD = re.compile(r"[a-z0-9']+")
_PLACEHOLDER = re.compile(r"\{[a-z_]+\}")
# A tag of the prompts, as written or as the fence escaped it in an answer (``&lt;/response>``).
_PROMPT_TAG = re.compile(
    r"(?:<|&lt;)\s*/?\s*(?:response|question|instructions|analysis|citation|verification_notes)",
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


_LABEL = re.compile(r"\bresponse\s+[a-z]\b", re.IGNORECASE)
# A model slug as OpenRouter spells one (``~openai/gpt-latest``, ``local/gemma-3-270m#2``).
_SLUG = re.compile(r"~?[\w.-]+/[\w.:~-]+(?:#\d+)?")
_ENTITY = re.compile(r"&#?\w+;")  # "&lt;", "&quot;": markup, not words
# A word with a letter in it: a bare number ("1.0", "2.5") is no point either.
_POINT_WORD = re.compile(r"[^\W_]*[^\W\d_][^\W_]*")


def says_nothing(text: str, slugs: Sequence[str] = (), *, fewest_words: int = 2) -> bool:
    """Whether ``text`` is no finding: an echo of the prompt, or too few words of its own.

    Args:
        text: An analysis entry.
        slugs: The panel's model slugs, taken out with the response labels.
        fewest_words: Words an entry needs once those are out (a stance, a
            part of an entry, may be one word: "Yes").
    """
    if echoes_prompt(text):
        return True
    for slug in sorted(slugs, key=len, reverse=True):
        text = text.replace(slug, " ")
    text = _ENTITY.sub(" ", _SLUG.sub(" ", _LABEL.sub(" ", text)))
    return len(_POINT_WORD.findall(text)) < fewest_words


def cleaned(analysis: Analysis, slugs: Sequence[str] = ()) -> tuple[Analysis, int]:
    """``analysis`` without the entries that say nothing, and how many entries went.

    A contradiction goes whole when its topic echoes the prompt, no stance is
    left, or its topic and stances together say nothing; a stance with no word
    of its own goes alone and is counted.
    """
    dropped = 0

    def kept(texts: Sequence[str]) -> list[str]:
        nonlocal dropped
        left = [t for t in texts if not says_nothing(t, slugs)]
        dropped += len(texts) - len(left)
        return left

    contradictions = []
    for contradiction in analysis.contradictions:
        stances = [
            s for s in contradiction.stances if not says_nothing(s.stance, slugs, fewest_words=1)
        ]
        dropped += len(contradiction.stances) - len(stances)
        # A contradiction's words are its topic's and its stances' ("soap": "never", "fine").
        said = " ".join([contradiction.topic, *(s.stance for s in stances)])
        if stances and not echoes_prompt(contradiction.topic) and not says_nothing(said, slugs):
            contradictions.append(contradiction.model_copy(update={"stances": stances}))
        else:
            dropped += 1
    partial = [p for p in analysis.partial_coverage if not says_nothing(p.point, slugs)]
    insights = [u for u in analysis.unique_insights if not says_nothing(u.insight, slugs)]
    dropped += len(analysis.partial_coverage) - len(partial)
    dropped += len(analysis.unique_insights) - len(insights)
    result = Analysis(
        consensus=kept(analysis.consensus),
        contradictions=contradictions,
        partial_coverage=partial,
        unique_insights=insights,
        blind_spots=kept(analysis.blind_spots),
    )
    return result, dropped
