"""OpenRouter's own web tools, and the chat model langfusion builds for every slug.

That model keeps the sources a reply cites.

On the endpoint the OpenRouter key is for, panel calls get OpenRouter's
server tools (``openrouter:web_search`` / ``openrouter:web_fetch``): OpenRouter
runs them, bills them to the same key and returns the pages the model used
as ``url_citation`` annotations, which ``ChatOpenAI`` would drop.
"""

from __future__ import annotations

from typing import Any

import openai
from langchain_core.language_models import BaseChatModel
from langchain_core.outputs import ChatGenerationChunk, ChatResult
from langchain_openai import ChatOpenAI
from pydantic import BaseModel

from langfusion.graph.models.traits import ModelTraits

# Results one openrouter:web_search call returns by default.
_RESULTS_PER_SEARCH = 5


def offered_server_tools(
    model: BaseChatModel, *, enabled: bool, max_tool_calls: int
) -> list[dict[str, Any]]:
    """The endpoint's own web tools, for a model served where they run (OpenRouter)."""
    if not enabled or not ModelTraits.of(model).server_tools:
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
    """``ChatOpenAI`` that keeps the sources a reply cites.

    A chat completion's ``annotations`` (``url_citation``s) land in the
    reply's ``additional_kwargs["annotations"]``, as the provider sent them,
    streamed or not; a streamed ``refusal`` is kept too.
    It stays on chat completions: ``ChatOpenAI`` would switch to the Responses
    API on its own once a tool that is not a function (a server tool) is bound.
    """

    use_responses_api: bool | None = False

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
