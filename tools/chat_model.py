"""``FusionChatModel``: a chat model that always deliberates."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Any, cast

from langchain_core.callbacks import (
    AsyncCallbackManager,
    AsyncCallbackManagerForLLMRun,
    CallbackManagerForLLMRun,
)
from langchain_core.callbacks.manager import adispatch_custom_event
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, AIMessageChunk, BaseMessage, HumanMessage
from langchain_core.messages.ai import UsageMetadata
from langchain_core.outputs import ChatGeneration, ChatGenerationChunk, ChatResult
from langchain_core.runnables import RunnableConfig

from langfusion.graph.schema import FusionResult
from langfusion.graph.state import FusionInput
from langfusion.tools._params import FusionParameters
from langfusion.tools._sync import iterate_sync, run_sync

FUSION_EVENT = "langfusion"


class FusionError(RuntimeError):
    """A fusion produced nothing usable; ``result`` keeps whatever it did produce."""

    def __init__(self, result: FusionResult) -> None:
        self.result = result
        super().__init__(f"{result.failure_reason}: {result.error}")


class FusionChatModel(FusionParameters, BaseChatModel):
    """A chat model that runs the whole fusion pipeline and answers with the synthesis.

    Use it wherever a LangChain chat model goes. The answer streams token by
    token from the synthesis; the analysis and the panel answers are on the
    message's ``response_metadata["fusion"]``, and ``usage_metadata`` totals
    every call the pipeline made. Progress events (panel model started,
    finished, failed; judge; synthesis) are dispatched as custom callback
    events named ``"langfusion"``.

    A run with nothing usable (every panel model failed, a missing key)
    raises ``FusionError``, whose ``result`` keeps the details.

    Example:
        ```python
        llm = FusionChatModel(analysis_models=["~openai/gpt-latest", "~google/gemini-pro-latest"])
        llm.invoke("What would falsify the efficient-market hypothesis?").content
        ```
    """

    def model_post_init(self, context: Any, /) -> None:
        """Refuse a configuration that would leave the alias without an answer."""
        if not self.context.synthesize:
            raise ValueError(
                "FusionChatModel always answers with the synthesis, so synthesize=False "
                "cannot apply; use FusionTool for the analysis alone."
            )

    @property
    def _llm_type(self) -> str:
        return "langfusion"

    @property
    def _identifying_params(self) -> dict[str, Any]:
        ctx = self.context
        return {"panel": list(ctx.panel), "judge": ctx.judge, "synthesis": ctx.synthesizer}

    async def _astream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> AsyncIterator[ChatGenerationChunk]:
        if not any(isinstance(m, HumanMessage) for m in messages):
            messages = [*messages, HumanMessage("")]
        config = self.run_config(RunnableConfig(callbacks=_child_callbacks(run_manager)))
        final: dict[str, Any] = {}
        stream: AsyncIterator[Any] = self.graph.astream(
            cast(FusionInput, {"messages": messages}),
            config,
            context=self.context,
            stream_mode=["messages", "custom", "values"],
        )
        async for mode, payload in stream:
            if mode == "messages":
                chunk, metadata = payload
                if metadata.get("langgraph_node") == "synthesize" and chunk.text:
                    piece = ChatGenerationChunk(message=AIMessageChunk(content=chunk.text))
                    if run_manager:
                        await run_manager.on_llm_new_token(chunk.text, chunk=piece)
                    yield piece
            elif mode == "custom":
                if run_manager:
                    await adispatch_custom_event(FUSION_EVENT, payload, config=config)
            else:
                final = payload
        result: FusionResult | None = final.get("result")
        if result is None or result.status == "error":
            raise FusionError(
                result or FusionResult.failure("the run ended early", "invalid_request")
            )
        yield ChatGenerationChunk(
            message=AIMessageChunk(
                content="",
                response_metadata={"fusion": result.model_dump(mode="json")},
                usage_metadata=_usage(result),
                chunk_position="last",
            )
        )

    async def _agenerate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        chunks = [chunk async for chunk in self._astream(messages, stop, run_manager, **kwargs)]
        merged = chunks[0]
        for chunk in chunks[1:]:
            merged = merged + chunk
        message = merged.message
        return ChatResult(
            generations=[
                ChatGeneration(
                    message=AIMessage(
                        content=message.content,
                        response_metadata=message.response_metadata,
                        usage_metadata=getattr(message, "usage_metadata", None),
                    )
                )
            ]
        )

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        return run_sync(lambda: self._agenerate(messages, stop, None, **kwargs))

    def _stream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> Iterator[ChatGenerationChunk]:
        yield from iterate_sync(lambda: self._astream(messages, stop, None, **kwargs))


def _child_callbacks(run_manager: AsyncCallbackManagerForLLMRun | None) -> Any:
    """Callbacks for the pipeline's runs, nested under this model's run in traces."""
    if run_manager is None:
        return None
    return AsyncCallbackManager(
        handlers=run_manager.inheritable_handlers,
        inheritable_handlers=run_manager.inheritable_handlers,
        parent_run_id=run_manager.run_id,
        tags=run_manager.inheritable_tags,
        inheritable_tags=run_manager.inheritable_tags,
        metadata=run_manager.inheritable_metadata,
        inheritable_metadata=run_manager.inheritable_metadata,
    )


def _usage(result: FusionResult) -> UsageMetadata:
    total = result.usage.total
    return UsageMetadata(
        input_tokens=total.input_tokens,
        output_tokens=total.output_tokens,
        total_tokens=total.total_tokens,
    )
