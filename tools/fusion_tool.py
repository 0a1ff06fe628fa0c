"""The ``fusion`` tool: deliberation that a calling model decides to use."""

from __future__ import annotations

import json
from typing import Any, ClassVar, Literal

from langchain_core.callbacks import AsyncCallbackManagerForToolRun, CallbackManagerForToolRun
from langchain_core.messages import HumanMessage
from langchain_core.runnables import RunnableConfig
from langchain_core.tools import BaseTool
from pydantic import BaseModel, Field, ValidationError

from langfusion.graph.schema import FusionResult, RunFailureReason
from langfusion.tools._params import FusionParameters
from langfusion.tools._sync import run_sync

# About a million tokens: past this no model's context window holds the prompt.
MAX_PROMPT_CHARS = 4_000_000

FUSION_DESCRIPTION = """\
Ask a panel of several strong AI models the same question in parallel, have a \
judge compare their answers, and get back a structured analysis: what they \
agree on (consensus), where they contradict each other and who said what, \
points only some of them covered, unique insights, and blind spots none of \
them addressed, plus every panel answer.

Use it when being wrong is expensive or one model's view is not enough: \
research questions, expert critique or review, compare-and-contrast, \
forecasts and judgement calls, questions where sources or experts disagree. \
Do NOT use it for short tactical requests (greetings, formatting, simple \
lookups, arithmetic, small code edits, follow-ups you can answer yourself): \
it is slow (tens of seconds) and costs several model calls.

Pass the complete question as `prompt`, with every piece of context the \
panel needs (it does not see this conversation). Read the returned JSON and \
write the final answer yourself. If it returns "status": "error", answer \
without it."""


class FusionToolInput(BaseModel):
    """The one argument the calling model fills in."""

    prompt: str = Field(
        description=(
            "The full question for the panel, self-contained: include the relevant context "
            "from the conversation, constraints, and what a good answer must cover."
        )
    )


def _validation_error(error: ValidationError) -> str:
    return _error_json(
        "The fusion tool needs one argument, `prompt`: a non-empty string with the full "
        "question. Call it again with that argument.",
        "invalid_request",
    )


def _error_json(message: str, code: RunFailureReason) -> str:
    return FusionResult.failure(message, code).to_json()


class FusionTool(FusionParameters, BaseTool):
    """Multi-model deliberation as a LangChain tool named ``fusion``.

    A panel of ``analysis_models`` answers the prompt in parallel, a judge
    compares the answers, and the tool returns the SPEC result as JSON (the
    typed ``FusionResult`` rides along as the ``ToolMessage`` artifact). The
    calling model writes the final answer. Failures come back as
    ``{"status": "error", "failure_reason": ...}``, never as exceptions.

    Example:
        ```python
        from langchain.agents import create_agent
        from langfusion.tools import FusionTool

        agent = create_agent("openai:gpt-4o", tools=[FusionTool(preset="budget")])
        ```
    """

    name: str = "fusion"
    description: str = FUSION_DESCRIPTION
    args_schema: type[BaseModel] = FusionToolInput
    response_format: Literal["content", "content_and_artifact"] = "content_and_artifact"
    handle_validation_error: Any = _validation_error

    # The calling model writes the answer; `synthesize=True` adds the synthesis as "answer".
    context_defaults: ClassVar[dict[str, Any]] = {"synthesize": False}

    async def _arun(
        self,
        prompt: str,
        config: RunnableConfig,
        run_manager: AsyncCallbackManagerForToolRun | None = None,
    ) -> tuple[str, FusionResult | None]:
        refused = _refusal(prompt)
        if refused is not None:
            return refused
        out = await self.graph.ainvoke(
            {"messages": [HumanMessage(prompt)]},
            self.run_config(config),
            context=self.context,
        )
        result = FusionResult.model_validate(out["result"])
        if not self.context.synthesize:
            return result.to_json(), result
        content = {**result.model_dump(mode="json"), "answer": out["answer"]}
        return json.dumps(content, ensure_ascii=False), result

    def _run(
        self,
        prompt: str,
        config: RunnableConfig,
        run_manager: CallbackManagerForToolRun | None = None,
    ) -> tuple[str, FusionResult | None]:
        return run_sync(lambda: self._arun(prompt, config))


def _refusal(prompt: object) -> tuple[str, FusionResult | None] | None:
    if not isinstance(prompt, str) or not prompt.strip():
        result = FusionResult.failure(
            "The prompt is empty. Call fusion again with the full question as `prompt`.",
            "invalid_request",
        )
    elif len(prompt) > MAX_PROMPT_CHARS:
        result = FusionResult.failure(
            f"The prompt is {len(prompt):,} characters, beyond what any panel model can read "
            f"(limit {MAX_PROMPT_CHARS:,}). Pass only the parts the question needs.",
            "invalid_request",
        )
    else:
        return None
    return result.to_json(), result
