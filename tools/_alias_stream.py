"""The alias's input check and stream plumbing.

What ``FusionChatModel.stream()``/``astream()`` hand the ``_stream``/``_astream``
that LangChain calls beneath them.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncGenerator, Generator
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any, cast

from langchain_core.callbacks import AsyncCallbackManager, BaseCallbackManager, CallbackManager
from langchain_core.language_models import LanguageModelInput
from langchain_core.messages import BaseMessage
from langchain_core.prompt_values import ChatPromptValue, PromptValue
from langchain_core.runnables import RunnableConfig, ensure_config

from langfusion.graph.state import as_conversation


@dataclass
class StreamCall:
    """What a stream()/astream() call hands the ``_stream``/``_astream`` beneath it.

    LangChain calls ``_stream`` without the run's callback manager, so the
    alias's stream methods prepare the run's callbacks and leave them here. The
    pipeline run a ``_stream``/``_astream`` opens is left here too, so that
    closing the stream closes that run at once, not whenever the garbage
    collector reaches the generators in between.
    """

    callbacks: BaseCallbackManager
    runs: list[Generator[Any, None, None] | AsyncGenerator[Any, None]] = field(default_factory=list)

    def keep(self, run: Generator[Any, None, None] | AsyncGenerator[Any, None]) -> None:
        self.runs.append(run)

    def close(self) -> None:
        for run in self.runs:
            if isinstance(run, Generator):
                run.close()

    async def aclose(self) -> None:
        for run in self.runs:
            if isinstance(run, AsyncGenerator):
                await run.aclose()


STREAM_CALL: ContextVar[StreamCall | None] = ContextVar("langfusion_stream_call", default=None)


def as_prompt(input: LanguageModelInput) -> LanguageModelInput:
    """The caller's input, refused in words when it is not a question or a conversation.

    Raises:
        ValueError: A message that is not a chat message, or no message at all.
    """
    if isinstance(input, str | PromptValue):
        return input
    return ChatPromptValue(messages=cast(list[BaseMessage], as_conversation(input)))


def stream_run(
    config: RunnableConfig | None, manager: type[CallbackManager] | type[AsyncCallbackManager]
) -> tuple[RunnableConfig, BaseCallbackManager]:
    """The stream's config with its run id fixed, and callbacks for runs nested under it.

    The caller's callbacks are configured here (tracers resolved once) and
    handed on, so the stream's own run and the pipeline's runs report to the
    same handlers, the pipeline's under the stream's run.
    """
    config = ensure_config(config)
    run_id = config.get("run_id") or uuid.uuid4()
    configured = manager.configure(
        config.get("callbacks"),
        None,
        inheritable_tags=config.get("tags"),
        inheritable_metadata=config.get("metadata"),
    )
    nested = CallbackManager(handlers=[], parent_run_id=run_id)
    nested.set_handlers(configured.inheritable_handlers)
    nested.add_tags(configured.inheritable_tags)
    nested.add_metadata(configured.inheritable_metadata)
    return RunnableConfig(**{**config, "callbacks": configured, "run_id": run_id}), nested
