"""``FusionChatModel``: a chat model that always deliberates."""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterator, Callable, Iterator, Sequence
from typing import Any, Literal

from langchain_core.callbacks import AsyncCallbackManagerForLLMRun, CallbackManagerForLLMRun
from langchain_core.language_models import BaseChatModel, LanguageModelInput
from langchain_core.language_models.base import LangSmithParams
from langchain_core.messages import AIMessage, AIMessageChunk, BaseMessage
from langchain_core.outputs import ChatGeneration, ChatGenerationChunk, ChatResult
from langchain_core.runnables import Runnable, RunnableConfig
from langchain_core.tools import BaseTool
from langchain_core.utils.function_calling import convert_to_openai_tool
from pydantic import Field, PrivateAttr, SecretStr

from langfusion.graph.context import API_KEY_ENV
from langfusion.graph.models import ModelRegistry
from langfusion.tools._params import FusionParameters
from langfusion.tools._sync import iterate_sync
from langfusion.tools.alias.callbacks import pipeline_callbacks
from langfusion.tools.alias.run import (
    FUSION_EVENT,
    Analyses,
    Ending,
    FusionError,
    run_alias,
    synthesis_options,
)
from langfusion.tools.alias.structured import structured_output

__all__ = ["FUSION_EVENT", "FusionChatModel", "FusionError"]


class FusionChatModel(FusionParameters, BaseChatModel):
    """A chat model that runs the whole fusion pipeline and answers with the synthesis.

    Use it wherever a LangChain chat model goes, the model of an agent
    included: ``bind_tools`` and ``with_structured_output`` apply to the
    synthesis step (the panel and the judge never see the caller's tools). In
    an agent loop it deliberates once per question: when the conversation ends
    with a tool result for a question it answered, it reuses that analysis
    and only writes the next synthesis step.

    On every call path (``invoke``, ``ainvoke``, ``stream``, ``astream``,
    ``batch``, ``abatch``) the answer is exactly the synthesis, streamed token
    by token where the caller streams; the analysis and the panel answers are
    on ``response_metadata["fusion"]``; ``usage_metadata`` totals every call
    the pipeline made; progress events (panel model started, finished, failed;
    judge; synthesis) are dispatched as custom callback events named
    ``"langfusion"``.

    Where the pipeline's runs and those events nest, in callbacks and
    LangSmith traces: under the alias's own run where LangChain gives it a run
    manager (``invoke``, ``ainvoke``, ``batch``, ``abatch``); on ``stream`` and
    ``astream``, and on ``invoke`` while a streaming handler listens
    (``astream_events``, a LangGraph ``"messages"`` stream), chat-model runs
    are leaves by LangChain's design, and they nest under the run that called
    the alias, beside its own (see ``langfusion.tools.alias.callbacks``).

    A run with nothing usable (every panel model failed, a missing key) or
    whose synthesis failed raises ``FusionError``, whose ``result`` keeps the
    details.

    Example:
        ```python
        llm = FusionChatModel(analysis_models=["~openai/gpt-latest", "~google/gemini-pro-latest"])
        llm.invoke("What would falsify the efficient-market hypothesis?").content
        ```
    """

    # LangChain's standard chat-model keywords, each applied to what the alias
    # is to its caller: the answer it writes, and the calls it makes.
    max_tokens: int | None = Field(default=None, gt=0)
    """Cap on the answer: the synthesis completion (``max_completion_tokens`` caps the panel's)."""
    stop: list[str] | None = None
    """Stop sequences of the synthesis, unless a call passes its own."""
    timeout: float | None = Field(default=None, gt=0, allow_inf_nan=False)
    """Deadline of each model call (panel, judge, synthesis), unless its own ``*_timeout_s``
    is given."""
    api_key: SecretStr | None = Field(default=None, exclude=True, repr=False)
    """The key for unregistered slugs' endpoint (OpenRouter, ``OPENROUTER_BASE_URL``, or a
    ``ModelRegistry(base_url=...)`` given as ``model_factory``), instead of
    ``OPENROUTER_API_KEY``."""
    streaming: bool = False
    """LangChain's switch: ``True`` makes ``invoke`` stream too, ``False`` (given) makes
    ``stream`` answer in one chunk. The alias streams its synthesis either way, so every
    call path sends each token of the answer to the callbacks' ``on_llm_new_token``."""

    _analyses: Analyses = PrivateAttr(default_factory=Analyses)

    @classmethod
    def context_settings(cls, own: dict[str, Any], given: dict[str, Any]) -> dict[str, Any]:
        """The run parameters, with ``timeout`` as the default of every deadline."""
        timeout = own.get("timeout")
        if timeout is None:
            return given
        deadlines = ("timeout_s", "judge_timeout_s", "synthesis_timeout_s")
        return {**dict.fromkeys(deadlines, timeout), **given}

    def model_post_init(self, context: Any, /) -> None:
        """Refuse a configuration that would leave the alias without an answer or a key."""
        if not self.context.synthesize:
            raise ValueError(
                "FusionChatModel always answers with the synthesis, so synthesize=False "
                "cannot apply; use FusionTool for the analysis alone."
            )
        if self.api_key is not None:
            factory = self.model_factory
            if factory is not None and not isinstance(factory, ModelRegistry):
                raise ValueError(
                    "FusionChatModel got api_key with a model_factory that is not a "
                    "ModelRegistry; give the key to that factory and pass only model_factory."
                )
            self.model_factory = (factory or ModelRegistry()).with_api_key(self.api_key)

    @property
    def lc_secrets(self) -> dict[str, str]:
        """Where a serialized alias finds its key: the environment, never the payload."""
        return {"api_key": API_KEY_ENV}

    @property
    def _llm_type(self) -> str:
        return "langfusion"

    @property
    def model_name(self) -> str:
        """The name usage is counted under: the pipeline, after the model that writes."""
        return f"fusion:{self.context.synthesizer}"

    @property
    def _identifying_params(self) -> dict[str, Any]:
        ctx = self.context
        return {"panel": list(ctx.panel), "judge": ctx.judge, "synthesis": ctx.synthesizer}

    def _get_ls_params(self, stop: list[str] | None = None, **kwargs: Any) -> LangSmithParams:
        params = super()._get_ls_params(stop=stop, **kwargs)
        params["ls_provider"] = "langfusion"
        override = kwargs.get("model")
        params["ls_model_name"] = override if isinstance(override, str) else self.model_name
        if (stop or self.stop) and "ls_stop" not in params:
            params["ls_stop"] = stop or self.stop
        return params

    def bind_tools(
        self,
        tools: Sequence[dict[str, Any] | type | Callable[..., Any] | BaseTool],
        *,
        tool_choice: str | dict[str, Any] | bool | None = None,
        **kwargs: Any,
    ) -> Runnable[LanguageModelInput, AIMessage]:
        """Bind tools to the synthesis step; the panel and the judge never see them.

        Args:
            tools: LangChain tools, functions, pydantic models or OpenAI tool dicts.
            tool_choice: ``"auto"``, ``"any"`` (some tool must be called), a
                tool's name, or ``None``; passed to the synthesis model's own
                ``bind_tools``.
            **kwargs: ``strict``, ``parallel_tool_calls``, as the synthesis model takes them.

        Returns:
            The alias with the tools bound, ready for an agent loop.
        """
        if tool_choice is not None:
            kwargs["tool_choice"] = tool_choice
        return self.bind(tools=[convert_to_openai_tool(t) for t in tools], **kwargs)

    def with_structured_output(
        self,
        schema: dict[str, Any] | type,
        *,
        method: Literal["function_calling", "json_schema", "json_mode"] = "function_calling",
        include_raw: bool = False,
        strict: bool | None = None,
        **kwargs: Any,
    ) -> Runnable[LanguageModelInput, dict[str, Any] | Any]:
        """The synthesis step answers in ``schema``; the panel and the judge deliberate as ever.

        Args:
            schema: A pydantic model, a TypedDict or a JSON schema.
            method: ``"function_calling"`` (a forced tool call, for any model
                with tool calling), ``"json_schema"`` or ``"json_mode"`` (an
                OpenAI-style ``response_format``).
            include_raw: Also return the raw message and any parsing error.
            strict: Ask the synthesis model for strict schema adherence.
            **kwargs: Not accepted; an unknown keyword is an error naming it.

        Returns:
            A runnable that returns the parsed answer (a ``dict`` with ``raw``,
            ``parsed`` and ``parsing_error`` with ``include_raw=True``).
        """
        if kwargs:
            raise ValueError(f"with_structured_output got unknown argument(s) {sorted(kwargs)}.")
        return structured_output(
            self, schema, method=method, include_raw=include_raw, strict=strict
        )

    def _run(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None,
        run_manager: CallbackManagerForLLMRun | AsyncCallbackManagerForLLMRun | None,
        kwargs: dict[str, Any],
    ) -> AsyncGenerator[str | Ending, None]:
        options = synthesis_options(
            type(self).__name__, stop or self.stop, {"max_tokens": self.max_tokens, **kwargs}
        )
        config = self.run_config(RunnableConfig(callbacks=pipeline_callbacks(run_manager)))
        return run_alias(self.graph, self.context, self._analyses, messages, options, config)

    def _chunk(self, piece: str | Ending) -> ChatGenerationChunk:
        if isinstance(piece, str):
            return ChatGenerationChunk(message=AIMessageChunk(content=piece))
        return ChatGenerationChunk(message=piece.last_chunk(self.model_name))

    async def _astream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> AsyncIterator[ChatGenerationChunk]:
        pieces = self._run(messages, stop, run_manager, kwargs)
        try:
            async for piece in pieces:
                chunk = self._chunk(piece)
                if run_manager:
                    await run_manager.on_llm_new_token(chunk.text, chunk=chunk)
                yield chunk
        finally:
            await pieces.aclose()  # a stream closed early cancels the run now

    def _stream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> Iterator[ChatGenerationChunk]:
        run = self._run(messages, stop, run_manager, kwargs)
        pieces = iterate_sync(lambda: run)
        try:
            for piece in pieces:
                chunk = self._chunk(piece)
                if run_manager:
                    run_manager.on_llm_new_token(chunk.text, chunk=chunk)
                yield chunk
        finally:
            pieces.close()

    async def _agenerate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        ending: Ending | None = None
        async for piece in self._run(messages, stop, run_manager, kwargs):
            if isinstance(piece, Ending):
                ending = piece
            elif run_manager:
                await run_manager.on_llm_new_token(piece, chunk=self._chunk(piece))
        return self._result(ending)

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        ending: Ending | None = None
        run = self._run(messages, stop, run_manager, kwargs)
        for piece in iterate_sync(lambda: run):
            if isinstance(piece, Ending):
                ending = piece
            elif run_manager:
                run_manager.on_llm_new_token(piece, chunk=self._chunk(piece))
        return self._result(ending)

    def _result(self, ending: Ending | None) -> ChatResult:
        if ending is None:  # the run always ends with one, or raises
            raise RuntimeError("the fusion run ended without an answer")
        return ChatResult(generations=[ChatGeneration(message=ending.message(self.model_name))])
