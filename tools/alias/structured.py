"""Structured output for the model alias: the synthesis step answers in the caller's schema."""

from __future__ import annotations

from operator import itemgetter
from typing import Any, Literal

from langchain_core.language_models import BaseChatModel, LanguageModelInput
from langchain_core.output_parsers import (
    BaseOutputParser,
    JsonOutputKeyToolsParser,
    JsonOutputParser,
    PydanticOutputParser,
    PydanticToolsParser,
)
from langchain_core.runnables import Runnable, RunnableMap, RunnablePassthrough
from langchain_core.utils.function_calling import convert_to_openai_tool
from langchain_core.utils.pydantic import is_basemodel_subclass

Method = Literal["function_calling", "json_schema", "json_mode"]
_METHODS = ("function_calling", "json_schema", "json_mode")


def structured_output(
    llm: BaseChatModel,
    schema: dict[str, Any] | type,
    *,
    method: Method,
    include_raw: bool,
    strict: bool | None,
) -> Runnable[LanguageModelInput, Any]:
    """``llm`` answering in ``schema``, parsed; see ``FusionChatModel.with_structured_output``."""
    if method not in _METHODS:
        raise ValueError(f"method must be one of {', '.join(map(repr, _METHODS))}; got {method!r}.")
    pydantic = isinstance(schema, type) and is_basemodel_subclass(schema)
    function = convert_to_openai_tool(schema, strict=strict)["function"]
    traced = {"kwargs": {"method": method, "strict": strict}, "schema": schema}
    parser: BaseOutputParser[Any]
    if method == "function_calling":
        bound = llm.bind_tools(
            [schema],
            tool_choice=function["name"],
            ls_structured_output_format=traced,
            **({"strict": strict} if strict is not None else {}),
        )
        parser = (
            PydanticToolsParser(tools=[schema], first_tool_only=True)  # type: ignore[list-item]
            if pydantic
            else JsonOutputKeyToolsParser(key_name=function["name"], first_tool_only=True)
        )
    else:
        response_format: dict[str, Any] = {"type": "json_object"}
        if method == "json_schema":
            json_schema = {"name": function["name"], "schema": function["parameters"]}
            if function.get("description"):
                json_schema["description"] = function["description"]
            if strict is not None:
                json_schema["strict"] = strict
            response_format = {"type": "json_schema", "json_schema": json_schema}
        bound = llm.bind(response_format=response_format, ls_structured_output_format=traced)
        parser = (
            PydanticOutputParser(pydantic_object=schema)  # type: ignore[arg-type]
            if pydantic
            else JsonOutputParser()
        )
    if not include_raw:
        return bound | parser
    parsed = RunnablePassthrough.assign(
        parsed=itemgetter("raw") | parser, parsing_error=lambda _: None
    )
    unparsed = RunnablePassthrough.assign(parsed=lambda _: None)
    return RunnableMap(raw=bound) | parsed.with_fallbacks([unparsed], exception_key="parsing_error")
