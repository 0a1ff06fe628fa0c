"""``FusionChatModel``: a chat model that always deliberates."""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterator, Callable, Generator, Iterator, Sequence
from typing import Any, Literal, cast

from langchain_core.callbacks import (
    AsyncCallbackManager,
    AsyncCallbackManagerForLLMRun,
    BaseCallbackManager,
    CallbackManager,
    CallbackManagerForLLMRun,
)
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
from langfusion.tools._alias_run import (
    FUSION_EVENT,
    Analyses,
    Ending,
    FusionError,
    nested_callbacks,
    run_alias,
    synthesis_options,
    without_usage_counters,
)
from langfusion.tools._alias_stream import STREAM_CALL, StreamCall, as_prompt, stream_run
from langfusion.tools._params import FusionParameters
from langfusion.tools._structured import structured_output
from langfusion.tools._sync import iterate_sync

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
    ``"langfusion"``; and the pipeline's runs nest under the alias's own run
    in callbacks and LangSmith traces.

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
    """Kept for LangChain's convention; the alias always streams its synthesis, so every
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

    # LangChain calls `_stream` from invoke() too when a streaming handler is
    # attached (astream_events, a LangGraph "messages" stream), without the
    # run's callbacks; invoke() takes `_generate` instead, which has them and
    # still sends every token to those handlers.
    def invoke(
        self,
        input: LanguageModelInput,
        config: RunnableConfig | None = None,
        *,
        stop: list[str] | None = None,
        **kwargs: Any,
    ) -> AIMessage:
        """Answer with the synthesis.

        Raises:
            ValueError: ``input`` is not a question or a conversation.
            FusionError: Nothing usable came out, or the synthesis failed.
        """
        return super().invoke(as_prompt(input), config, stop=stop, **kwargs)

    async def ainvoke(
        self,
        input: LanguageModelInput,
        config: RunnableConfig | None = None,
        *,
        stop: list[str] | None = None,
        **kwargs: Any,
    ) -> AIMessage:
        """Answer with the synthesis.

        Raises:
            ValueError: ``input`` is not a question or a conversation.
            FusionError: Nothing usable came out, or the synthesis failed.
        """
        return await super().ainvoke(as_prompt(input), config, stop=stop, **kwargs)

    def _should_stream(self, *, async_api: bool, **kwargs: Any) -> bool:
        return bool(kwargs.get("stream")) and super()._should_stream(async_api=async_api, **kwargs)

    def stream(
        self,
        input: LanguageModelInput,
        config: RunnableConfig | None = None,
        *,
        stop: list[str] | None = None,
        **kwargs: Any,
    ) -> Iterator[AIMessageChunk]:
        """Stream the synthesis token by token; closing the stream early cancels the run."""
        config, callbacks = stream_run(config, CallbackManager)
        # BaseChatModel.stream is a generator: closing it ends the run.
        chunks = cast(
            Generator[AIMessageChunk, None, None],
            super().stream(as_prompt(input), config, stop=stop, **kwargs),
        )
        call = StreamCall(callbacks)
        try:
            token = STREAM_CALL.set(call)
            try:
                first = next(chunks, None)
            finally:
                STREAM_CALL.reset(token)
            if first is not None:
                yield first
                yield from chunks
        finally:
            chunks.close()
            call.close()

    async def astream(
        self,
        input: LanguageModelInput,
        config: RunnableConfig | None = None,
        *,
        stop: list[str] | None = None,
        **kwargs: Any,
    ) -> AsyncIterator[AIMessageChunk]:
        """Stream the synthesis token by token; closing the stream early cancels the run."""
        config, callbacks = stream_run(config, AsyncCallbackManager)
        chunks = cast(
            AsyncGenerator[AIMessageChunk, None],
            super().astream(as_prompt(input), config, stop=stop, **kwargs),
        )
        call = StreamCall(callbacks)
        try:
            token = STREAM_CALL.set(call)
            try:
                first = await anext(chunks, None)
            finally:
                STREAM_CALL.reset(token)
            if first is not None:
                yield first
                async for chunk in chunks:
                    yield chunk
        finally:
            await chunks.aclose()
            await call.aclose()

    def _run(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None,
        callbacks: BaseCallbackManager | None,
        kwargs: dict[str, Any],
    ) -> AsyncGenerator[str | Ending, None]:
        options = synthesis_options(
            type(self).__name__, stop or self.stop, {"max_tokens": self.max_tokens, **kwargs}
        )
        config = self.run_config(RunnableConfig(callbacks=without_usage_counters(callbacks)))
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
        call = STREAM_CALL.get()
        callbacks = nested_callbacks(run_manager) or (call.callbacks if call else None)
        pieces = self._run(messages, stop, callbacks, kwargs)
        if call:
            call.keep(pieces)
        async for piece in pieces:
            chunk = self._chunk(piece)
            if run_manager:
                await run_manager.on_llm_new_token(chunk.text, chunk=chunk)
            yield chunk

    def _stream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> Iterator[ChatGenerationChunk]:
        call = STREAM_CALL.get()
        callbacks = nested_callbacks(run_manager) or (call.callbacks if call else None)
        pieces = iterate_sync(lambda: self._run(messages, stop, callbacks, kwargs))
        if call:
            call.keep(pieces)
        for piece in pieces:
            chunk = self._chunk(piece)
            if run_manager:
                run_manager.on_llm_new_token(chunk.text, chunk=chunk)
            yield chunk

    async def _agenerate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        ending: Ending | None = None
        callbacks = nested_callbacks(run_manager)
        async for piece in self._run(messages, stop, callbacks, kwargs):
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
        callbacks = nested_callbacks(run_manager)
        for piece in iterate_sync(lambda: self._run(messages, stop, callbacks, kwargs)):
            if isinstance(piece, Ending):
                ending = piece
            elif run_manager:
                run_manager.on_llm_new_token(piece, chunk=self._chunk(piece))
        return self._result(ending)

    def _result(self, ending: Ending | None) -> ChatResult:
        if ending is None:  # the run always ends with one, or raises
            raise RuntimeError("the fusion run ended without an answer")
        return ChatResult(generations=[ChatGeneration(message=ending.message(self.model_name))])
