"""What the synthesis is sent: the analysis, the answers and the sources, fenced as data."""

from __future__ import annotations

from collections.abc import Sequence

from langchain_core.messages import AnyMessage, BaseMessage, HumanMessage, SystemMessage

from langfusion.graph.judge import fence, fit
from langfusion.graph.prompts import (
    ASKER_INSTRUCTIONS,
    JUDGE_RESPONSE,
    PLAIN_ASKER_INSTRUCTIONS,
    PLAIN_SYNTHESIS_NOTES,
    SYNTHESIS_CITATIONS,
    SYNTHESIS_SYSTEM,
    SYNTHESIS_USER,
)
from langfusion.graph.schema import Analysis, Citation, PanelResponse

NO_ANALYSIS = "(no analysis: the judge failed; compare the responses yourself)"
# Per answer, in the plain notes a small base model gets.
_PLAIN_NOTE_CHARS = 400


def synthesis_messages(
    asked: str,
    told: str | None,
    history: Sequence[AnyMessage],
    analysis: Analysis | None,
    responses: Sequence[PanelResponse],
    citations: Sequence[Citation] = (),
    *,
    plain: bool = False,
) -> list[BaseMessage]:
    """The synthesis prompt: earlier turns, then the question with everything the run found.

    The asker's system messages come as fenced context (``<instructions>``),
    never as the synthesis's own system prompt.

    Args:
        asked: The question.
        told: The asker's instructions (its system messages), if any.
        history: The earlier turns, without system messages.
        analysis: The judge's analysis, in slugs (``None`` when the judge failed).
        responses: The panel answers.
        citations: The pages the panel and judge used, deduplicated.
        plain: For a small base model: plain notes, no tags or instructions of
            ours for it to continue into its answer.
    """
    if plain:
        notes = " ".join(" ".join(r.content.split())[:_PLAIN_NOTE_CHARS] for r in responses)
        system = PLAIN_SYNTHESIS_NOTES.format(notes=notes)
        if told:
            system += " " + PLAIN_ASKER_INSTRUCTIONS.format(instructions=" ".join(told.split()))
        return [SystemMessage(system), *history, HumanMessage(asked)]
    prompt = SYNTHESIS_USER.format(
        question=fence(asked),
        analysis=fence(analysis.model_dump_json(indent=1)) if analysis else NO_ANALYSIS,
        responses="\n\n".join(
            JUDGE_RESPONSE.format(label=r.model, content=fence(fit(r.content))) for r in responses
        ),
    )
    if citations:
        listed = "\n".join(
            fence(f"- {c.url}" + (f" ({' '.join(c.title.split())})" if c.title else ""))
            for c in citations
        )
        prompt = SYNTHESIS_CITATIONS.format(citations=listed) + prompt
    if told:
        prompt = ASKER_INSTRUCTIONS.format(instructions=fence(told)) + prompt
    return [SystemMessage(SYNTHESIS_SYSTEM), *history, HumanMessage(prompt)]
