"""Scripted chat models and a factory of them, for logic tests without a network."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Mapping, Sequence
from typing import Any

from langchain_core.callbacks import AsyncCallbackManagerForLLMRun, CallbackManagerForLLMRun
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage
from langchain_core.outputs import ChatGeneration, ChatResult
from langchain_core.runnables import Runnable, RunnableLambda
from pydantic import Field

from langfusion.graph.schema import FusionResult

Reply = str | AIMessage | BaseException


class ScriptedModel(BaseChatModel):
    """Answers each call with the next scripted reply (the last one repeats)."""

    replies: list[Any] = Field(default_factory=lambda: ["an answer"])
    delay: float = 0.0
    usage: tuple[int, int] = (10, 5)
    calls: list[list[BaseMessage]] = Field(default_factory=list)

    @property
    def _llm_type(self) -> str:
        return "scripted"

    def _next(self, messages: list[BaseMessage]) -> ChatResult:
        self.calls.append(list(messages))
        reply = self.replies[min(len(self.calls) - 1, len(self.replies) - 1)]
        if isinstance(reply, BaseException):
            raise reply
        message = reply if isinstance(reply, AIMessage) else AIMessage(content=reply)
        if message.usage_metadata is None:
            message = message.model_copy(
                update={
                    "usage_metadata": {
                        "input_tokens": self.usage[0],
                        "output_tokens": self.usage[1],
                        "total_tokens": sum(self.usage),
                    }
                }
            )
        return ChatResult(generations=[ChatGeneration(message=message)])

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        return self._next(messages)

    async def _agenerate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        if self.delay:
            await asyncio.sleep(self.delay)
        return self._next(messages)

    def bind_tools(self, tools: Sequence[Any], **kwargs: Any) -> ScriptedModel:  # type: ignore[override]
        return self

    def with_structured_output(  # type: ignore[override]
        self, schema: Any, *, include_raw: bool = False, **kwargs: Any
    ) -> Runnable[Any, Any]:
        """Parse the scripted reply as JSON, the way json_mode does."""

        async def parse(messages: Any) -> dict[str, Any]:
            raw = await self.ainvoke(messages)
            try:
                parsed = json.loads(raw.text) if raw.text.strip() else None
                error = None
            except json.JSONDecodeError as exc:
                parsed, error = None, exc
            return {"raw": raw, "parsed": parsed, "parsing_error": error}

        return RunnableLambda(parse)


class FakeFactory:
    """A model factory over scripted models, recording the settings of every build."""

    def __init__(self, models: dict[str, BaseChatModel]) -> None:
        self.models = models
        self.settings: list[tuple[str, dict[str, Any]]] = []

    def __call__(self, slug: str, /, **settings: Any) -> BaseChatModel:
        self.settings.append((slug, settings))
        self.ensure_available(slug)
        return self.models[slug]

    def ensure_available(self, slug: str) -> None:
        """Refuse a slug it has no model for, as the registry refuses one it cannot serve."""
        if slug not in self.models:
            raise ValueError(f"unknown model {slug!r}")

    def may_block(self, slug: str) -> bool:
        return False


def verdict(**overrides: Any) -> str:
    """A judge reply naming responses by label."""
    data: dict[str, Any] = {
        "reasoning": "A and B agree on the basics; B adds a caveat.",
        "consensus": ["Carbon taxes reduce emissions."],
        "contradictions": [
            {
                "topic": "effect on growth",
                "stances": [
                    {"model": "Response A", "stance": "negligible"},
                    {"model": "Response B", "stance": "small but real"},
                ],
            }
        ],
        "partial_coverage": [{"models": ["Response A"], "point": "border adjustments"}],
        "unique_insights": [{"model": "Response B", "insight": "dividends offset regressivity"}],
        "blind_spots": ["political feasibility"],
    }
    data.update(overrides)
    return json.dumps(data)


def api_error(
    status: int, message: str = "upstream says no", headers: dict[str, str] | None = None
) -> Exception:
    """An ``openai`` status error as the client raises it."""
    import httpx
    import openai

    request = httpx.Request("POST", "http://127.0.0.1:9/v1/chat/completions")
    response = httpx.Response(status, headers=headers or {}, request=request)
    body = {"error": {"message": message}}
    cls = {
        400: openai.BadRequestError,
        401: openai.AuthenticationError,
        402: openai.APIStatusError,
        404: openai.NotFoundError,
        429: openai.RateLimitError,
    }.get(status, openai.InternalServerError if status >= 500 else openai.APIStatusError)
    return cls(message, response=response, body=body)


def result_of(out: Mapping[str, Any]) -> FusionResult:
    """The result a fusion graph's output holds (as JSON data), read as a model."""
    return FusionResult.model_validate(out["result"])
