"""The judge: neutral labels, fencing, and the judge's call (its verdict: ``verdict.py``)."""

from __future__ import annotations

import random
import re
import string
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import BaseMessage, HumanMessage, SystemMessage
from langchain_core.runnables import RunnableConfig
from langchain_core.tools import BaseTool

from langfusion.graph.conversation import message_text
from langfusion.graph.prompts import (
    ASKER_INSTRUCTIONS,
    JUDGE_NOTES,
    JUDGE_RESPONSE,
    JUDGE_SINGLE,
    JUDGE_SYSTEM,
    JUDGE_USER,
    JUDGE_VERIFY,
    TRUNCATED,
)
from langfusion.graph.scaffolding import cleaned
from langfusion.graph.schema import (
    Analysis,
    AnalysisMeta,
    Citation,
    DroppedCitation,
    JudgeFailure,
    PanelResponse,
    Usage,
)
from langfusion.graph.toolloop import answer_with_tools
from langfusion.graph.verdict import structured_verdict

# What one panel answer may cost the judge: longer answers are cut in the middle.
MAX_ANSWER_CHARS_FOR_JUDGE = 24_000

# The opening of any tag the judge and synthesis prompts are built from, in any
# case and spacing: untrusted text cannot close its element or open another.
_PROMPT_TAG = re.compile(
    r"<(?=\s*/?\s*(?:response|question|instructions|analysis|citation|verification_notes))",
    re.IGNORECASE,
)


def fence(text: str) -> str:
    """``text`` made safe to place inside a prompt element: its prompt tags are escaped."""
    return _PROMPT_TAG.sub("&lt;", text)


@dataclass(frozen=True)
class Panel:
    """The surviving answers under neutral labels, in a per-run shuffled order."""

    labels: dict[str, str]
    responses: tuple[PanelResponse, ...]

    @classmethod
    def shuffled(cls, responses: Sequence[PanelResponse], seed: str) -> Panel:
        """Label ``responses`` Response A, B, ... in an order drawn from ``seed``."""
        order = list(responses)
        random.Random(seed).shuffle(order)
        labels = {
            f"Response {letter}": r.model
            for letter, r in zip(string.ascii_uppercase, order, strict=False)
        }
        return cls(labels=labels, responses=tuple(order))

    def meta(
        self,
        dropped: Sequence[DroppedCitation] = (),
        repaired: bool = False,
        dropped_entries: int = 0,
    ) -> AnalysisMeta:
        """How the analysis of this panel was made: what was compared, dropped, repaired."""
        return AnalysisMeta(
            responses_compared=len(self.responses),
            degraded="single_response" if len(self.responses) == 1 else None,
            dropped_citations=list(dropped),
            dropped_entries=dropped_entries,
            repaired=repaired,
        )

    def prompt(self, question: str, instructions: str | None = None) -> str:
        """The judge's user prompt: one fenced response element per answer.

        Args:
            question: The question the panel answered.
            instructions: The asker's system instructions, shown as context.
        """
        prompt = JUDGE_USER.format(
            question=fence(question),
            responses="\n\n".join(
                JUDGE_RESPONSE.format(label=label, content=fence(fit(r.content)))
                for label, r in zip(self.labels, self.responses, strict=True)
            ),
        )
        if instructions:
            prompt = ASKER_INSTRUCTIONS.format(instructions=fence(instructions)) + prompt
        if len(self.responses) == 1:
            prompt += JUDGE_SINGLE
        return prompt


def fit(content: str) -> str:
    """``content`` cut in the middle to what one answer may cost the judge."""
    if len(content) <= MAX_ANSWER_CHARS_FOR_JUDGE:
        return content
    keep = MAX_ANSWER_CHARS_FOR_JUDGE // 2
    omitted = len(content) - 2 * keep
    return content[:keep] + TRUNCATED.format(omitted=omitted) + content[-keep:]


@dataclass(frozen=True)
class Judgement:
    """The judge's analysis in slugs (``None`` when it failed), and how it was made."""

    analysis: Analysis | None
    meta: AnalysisMeta
    usage: Usage | None
    failure: JudgeFailure | None
    citations: tuple[Citation, ...] = ()


async def judge_panel(
    model: BaseChatModel,
    panel: Panel,
    question: str,
    config: RunnableConfig,
    *,
    instructions: str | None = None,
    research: bool = False,
    tools: Sequence[BaseTool] = (),
    server_tools: Sequence[dict[str, Any]] = (),
    max_tool_calls: int = 8,
) -> Judgement:
    """Have ``model`` compare ``panel``'s answers; cite only its panelists, in slugs.

    Args:
        model: The judge.
        panel: The labelled answers.
        question: The question they answer.
        config: The run config of the judge's calls.
        instructions: The asker's system instructions, shown as fenced context.
        research: Let the judge check disputed facts on the web: with
            ``server_tools``, in its one call (the endpoint runs them); with
            client-side ``tools``, in a call of its own before the verdict.
        tools: The client-side web tools for that check.
        server_tools: The endpoint's own web tools, used instead of ``tools``.
        max_tool_calls: Tool-call budget of the check.
    """
    prompt = panel.prompt(question, instructions)
    messages: list[BaseMessage] = [SystemMessage(JUDGE_SYSTEM), HumanMessage(prompt)]
    research_usage: Usage | None = None
    cited: tuple[Citation, ...] = ()
    in_call = tuple(server_tools) if research else ()
    if research and not server_tools:
        notes = await answer_with_tools(
            model,
            [SystemMessage(JUDGE_SYSTEM), HumanMessage(prompt + JUDGE_VERIFY)],
            tools,
            max_tool_calls=max_tool_calls,
            config=config,
        )
        research_usage, cited = notes.usage, notes.citations
        text = fence(message_text(notes.message)) or "(none)"
        messages.append(HumanMessage(JUDGE_NOTES.format(notes=text)))
    outcome = await structured_verdict(
        model, messages, config, tuple(panel.labels), server_tools=in_call
    )
    cited += tuple(outcome.citations)
    usage = outcome.usage
    if research_usage is not None:
        usage = Usage.total([usage, research_usage])
    if outcome.verdict is None:
        return Judgement(None, panel.meta(), usage, outcome.failure, cited)
    analysis, dropped = outcome.verdict.analysis().attributed(panel.labels)
    analysis, emptied = cleaned(analysis, [r.model for r in panel.responses])
    meta = panel.meta(dropped, outcome.repaired, emptied)
    return Judgement(analysis, meta, usage, None, cited)
