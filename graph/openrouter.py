"""OpenRouter's own web tools, and the chat model langfusion builds for every slug.

That model keeps the sources a reply cites and builds each reply on the event
loop instead of in a worker thread.

On the endpoint the OpenRouter key is for, panel calls get OpenRouter's
server tools (``openrouter:web_search`` / ``openrouter:web_fetch``): OpenRouter
runs them, bills them to the same key and returns the pages the model used
as ``url_citation`` annotations, which ``ChatOpenAI`` would drop.
"""

from __future__ import annotations

from typing import Any

import openai
from langchain_core.callbacks import AsyncCallbackManagerForLLMRun
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import BaseMessage
from langchain_core.outputs import ChatGenerationChunk, ChatResult
from langchain_openai import ChatOpenAI
from langchain_openai.chat_models.base import (
    _add_gateway_metadata,
    _handle_openai_api_error,
    _handle_openai_bad_request,
)
from pydantic import BaseModel

# Chat-model metadata key: set on models served by the default endpoint.
SERVER_TOOLS_KEY = "langfusion_server_tools"
# Results one openrouter:web_search call returns by default.
_RESULTS_PER_SEARCH = 5


def offered_server_tools(
    model: BaseChatModel, *, enabled: bool, max_tool_calls: int
) -> list[dict[str, Any]]:
    """The endpoint's own web tools, for a model served where they run (OpenRouter)."""
    if not enabled or not (model.metadata or {}).get(SERVER_TOOLS_KEY):
        return []
    return server_tools(max_tool_calls)


def server_tools(max_tool_calls: int) -> list[dict[str, Any]]:
    """OpenRouter's web search and fetch, bounded like ``max_tool_calls`` client-side calls."""
    return [
        {
            "type": "openrouter:web_search",
            "parameters": {"max_total_results": max_tool_calls * _RESULTS_PER_SEARCH},
        },
        {"type": "openrouter:web_fetch", "parameters": {"max_uses": max_tool_calls}},
    ]


class CitingChatOpenAI(ChatOpenAI):
    """``ChatOpenAI`` that keeps the sources a reply cites and builds its result on the loop.

    A chat completion's ``annotations`` (``url_citation``s) land in the
    reply's ``additional_kwargs["annotations"]``, as the provider sent them,
    streamed or not; a streamed ``refusal`` is kept too.
    It stays on chat completions: ``ChatOpenAI`` would switch to the Responses
    API on its own once a tool that is not a function (a server tool) is bound.
    """

    use_responses_api: bool | None = False

    async def _agenerate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        """``ChatOpenAI``'s chat-completion call, with its result built on the event loop.

        ``ChatOpenAI`` hands the building of the result to a worker thread, a
        hop that costs more than the work it moves (about 70 µs of CPU per
        call on a 2-core machine, against a few µs for the work, which holds
        the GIL wherever it runs). The request and its errors are
        ``ChatOpenAI``'s own.
        """
        payload = self._get_request_payload(messages, stop=stop, **kwargs)
        if self._use_responses_api(payload):
            return await super()._agenerate(messages, stop, run_manager, **kwargs)
        create = self.async_client.with_raw_response.create
        if "response_format" in payload:  # structured output, parsed by the SDK
            payload.pop("stream")
            create = self.root_async_client.chat.completions.with_raw_response.parse
        raw = None
        try:
            raw = await create(**payload)
            response = raw.parse()
        except openai.BadRequestError as exc:
            _handle_openai_bad_request(exc)  # raises langchain-openai's typed error
            raise
        except openai.APIError as exc:
            _handle_openai_api_error(exc)
            raise
        except Exception as exc:
            if raw is not None:
                exc.response = raw.http_response  # type: ignore[attr-defined]
            raise
        info: dict[str, Any] = (
            {"headers": dict(raw.headers)} if self.include_response_headers else {}
        )
        _add_gateway_metadata(info, raw)
        return self._create_chat_result(response, info)

    def _create_chat_result(
        self,
        response: dict[str, Any] | openai.BaseModel,
        generation_info: dict[str, Any] | None = None,
    ) -> ChatResult:
        result = super()._create_chat_result(response, generation_info)
        choices = (
            response.get("choices")
            if isinstance(response, dict)
            else getattr(response, "choices", None)
        )
        for generation, choice in zip(result.generations, choices or [], strict=False):
            annotations = _annotations(choice)
            if annotations:
                generation.message.additional_kwargs["annotations"] = annotations
        return result

    def _convert_chunk_to_generation_chunk(
        self,
        chunk: dict[str, Any],
        default_chunk_class: type,
        base_generation_info: dict[str, Any] | None,
    ) -> ChatGenerationChunk | None:
        generation = super()._convert_chunk_to_generation_chunk(
            chunk, default_chunk_class, base_generation_info
        )
        choices = chunk.get("choices") or []
        delta = (choices[0].get("delta") or {}) if choices else {}
        if generation is not None:
            # Chunks merge additional_kwargs by concatenation: lists and strings add up.
            for key in ("annotations", "refusal"):
                if delta.get(key):
                    generation.message.additional_kwargs[key] = delta[key]
        return generation


def _annotations(choice: Any) -> list[Any] | None:
    """A completion choice's message annotations as the provider sent them (plain data)."""
    if isinstance(choice, dict):
        return (choice.get("message") or {}).get("annotations")
    annotations = getattr(getattr(choice, "message", None), "annotations", None)
    if not annotations:
        return None
    return [a.model_dump(warnings=False) if isinstance(a, BaseModel) else a for a in annotations]
