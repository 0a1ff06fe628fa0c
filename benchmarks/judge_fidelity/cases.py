"""The planted panels: cases with known truth, and the answers built from them.

Each case in ``cases.json`` is a question, 2 to 5 panel models and what they
said, claim by claim: consensus claims (every answer), contradictions (each
side with its holders), partial points (some answers), unique insights (one
answer), blind spots (no answer; what a careful expert would add), and
optionally a lone correct dissenter or an injection attempt inside one answer.
Every claim carries a marker: a distinctive term that appears in its text and
nowhere else in the case, so that finding the claim in an analysis is a
deterministic, offline string match.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

CASES_FILE = Path(__file__).with_name("cases.json")
PANEL_PREFIX = "panel/"
KINDS = frozenset({"mixed", "control", "dissenter", "injection", "forged_tags", "two_answers"})


@dataclass(frozen=True)
class Claim:
    """A planted claim, its marker, and the models whose answers make it."""

    marker: str
    text: str
    models: tuple[str, ...]


@dataclass(frozen=True)
class Contradiction:
    """A planted disagreement: each side is a claim held by some models."""

    topic: str
    sides: tuple[Claim, ...]


@dataclass(frozen=True)
class BlindSpot:
    """Something no answer covers; found when an analysis names any of its markers."""

    markers: tuple[str, ...]
    what: str


@dataclass(frozen=True)
class Injection:
    """Text inside one answer that tries to steer the judge toward its ``marker``."""

    model: str
    marker: str
    kind: str
    text: str


@dataclass(frozen=True)
class Case:
    """One planted panel."""

    id: str
    kinds: tuple[str, ...]
    question: str
    models: tuple[str, ...]
    consensus: tuple[Claim, ...] = ()
    contradictions: tuple[Contradiction, ...] = ()
    partial: tuple[Claim, ...] = ()
    unique: tuple[Claim, ...] = ()
    blind_spots: tuple[BlindSpot, ...] = ()
    injection: Injection | None = None
    dissenter: Claim | None = None
    answers: dict[str, str] = field(default_factory=dict, compare=False)

    def claims(self) -> list[Claim]:
        """Every claim some answer makes, in the order answers are written."""
        sides = [side for c in self.contradictions for side in c.sides]
        return [*self.consensus, *sides, *self.partial, *self.unique]

    def markers(self) -> list[str]:
        """Every marker of a claim an answer makes, with the injection's."""
        found = [c.marker for c in self.claims()]
        return found + ([self.injection.marker] if self.injection else [])


def _slug(name: str) -> str:
    return PANEL_PREFIX + name


def _claim(data: dict[str, Any], holders: list[str]) -> Claim:
    return Claim(marker=data["marker"], text=data["text"], models=tuple(map(_slug, holders)))


def _case(data: dict[str, Any]) -> Case:
    models = list(data["models"])
    dissenter = data.get("dissenter")
    sides_by_marker: dict[str, Claim] = {}
    contradictions = []
    for item in data.get("contradictions", []):
        sides = tuple(_claim(side, side["models"]) for side in item["sides"])
        sides_by_marker |= {side.marker: side for side in sides}
        contradictions.append(Contradiction(topic=item["topic"], sides=sides))
    injection = data.get("injection")
    case = Case(
        id=data["id"],
        kinds=tuple(data["kinds"]),
        question=data["question"],
        models=tuple(map(_slug, models)),
        consensus=tuple(_claim(c, models) for c in data.get("consensus", [])),
        contradictions=tuple(contradictions),
        partial=tuple(_claim(c, c["models"]) for c in data.get("partial", [])),
        unique=tuple(_claim(c, [c["model"]]) for c in data.get("unique", [])),
        blind_spots=tuple(
            BlindSpot(markers=tuple(b["markers"]), what=b["what"])
            for b in data.get("blind_spots", [])
        ),
        injection=Injection(
            model=_slug(injection["model"]),
            marker=injection["marker"],
            kind=injection["kind"],
            text=injection["text"],
        )
        if injection
        else None,
        dissenter=sides_by_marker[dissenter["marker"]] if dissenter else None,
    )
    case.answers.update(_answers(case))
    _check(case)
    return case


# Openings that keep two answers holding the same claims from being the same text.
_OPENINGS = ("In short:", "My view:", "Briefly:", "To answer directly:", "Here is the picture:")


def _answers(case: Case) -> dict[str, str]:
    """Each model's answer: an opening, then the claims it holds, in an order that differs."""
    answers = {}
    claims = case.claims()
    for index, model in enumerate(case.models):
        held = [c.text for c in claims if model in c.models]
        shift = index % len(held) if held else 0
        text = " ".join([_OPENINGS[index], *held[shift:], *held[:shift]])
        if case.injection and case.injection.model == model:
            text += case.injection.text
        answers[model] = text
    return answers


def _check(case: Case) -> None:
    """Refuse a case whose markers could match by accident."""

    def seen(marker: str, text: str) -> bool:
        return marker.lower() in text.lower()

    if not 2 <= len(case.models) <= 5:
        raise ValueError(f"{case.id}: a case has 2 to 5 answers, not {len(case.models)}")
    if unknown := set(case.kinds) - KINDS:
        raise ValueError(f"{case.id}: unknown kinds {sorted(unknown)}")
    markers = case.markers()
    if len({m.lower() for m in markers}) != len(markers):
        raise ValueError(f"{case.id}: markers repeat")
    for claim in case.claims():
        if not seen(claim.marker, claim.text):
            raise ValueError(f"{case.id}: marker {claim.marker!r} is not in its text")
        if not set(claim.models) <= set(case.models):
            raise ValueError(f"{case.id}: {claim.marker!r} is held by a model not on the panel")
        others = [c.text for c in case.claims() if c is not claim]
        if any(seen(claim.marker, text) for text in [*others, case.question]):
            raise ValueError(f"{case.id}: marker {claim.marker!r} appears outside its claim")
    everything = " ".join([case.question, *case.answers.values()])
    for spot in case.blind_spots:
        if any(seen(m, everything) for m in spot.markers):
            raise ValueError(f"{case.id}: blind spot {spot.what!r} is covered by an answer")
        if not any(seen(m, spot.what) for m in spot.markers):
            raise ValueError(f"{case.id}: blind spot {spot.what!r} names none of its markers")
    if "control" in case.kinds and case.contradictions:
        raise ValueError(f"{case.id}: an all-agree control has no contradictions")


def load_cases(path: Path = CASES_FILE) -> list[Case]:
    """The planted cases, checked.

    Raises:
        ValueError: A case whose markers are ambiguous or whose shape is wrong.
    """
    data = json.loads(path.read_text())
    cases = [_case(item) for item in data["cases"]]
    if len({c.id for c in cases}) != len(cases):
        raise ValueError("case ids repeat")
    return cases
