"""What the pipeline needs to know about a chat model beyond its interface."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Literal

from langchain_core.language_models import BaseChatModel

__all__ = ["ModelTraits", "StructuredMethod"]

StructuredMethod = Literal["json_schema", "function_calling", "json_mode"]

# The one chat-model metadata key the traits travel under (as plain data, since
# a model's metadata also reaches its traced runs).
_KEY = "langfusion_traits"


@dataclass(frozen=True, kw_only=True)
class ModelTraits:
    """A model's capabilities, as the factory that built it knows them.

    Attributes:
        structured_method: The structured-output method the model takes;
            ``None``: try the strictest first.
        schema_caps: Its JSON schema needs length caps (small local models
            otherwise run lists on until ``max_tokens``).
        takes_tools: It can call function tools (the web tools are offered).
        server_tools: Its endpoint runs OpenRouter's own web tools.
        plain_prompts: A small base model that continues whatever it is given:
            it gets plain text instead of tagged prompts.
    """

    structured_method: StructuredMethod | None = None
    schema_caps: bool = False
    takes_tools: bool = True
    server_tools: bool = False
    plain_prompts: bool = False

    @classmethod
    def of(cls, model: BaseChatModel) -> ModelTraits:
        """The traits set on ``model`` (the defaults for a model built elsewhere)."""
        data = (model.metadata or {}).get(_KEY)
        if not isinstance(data, dict):
            return cls()
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})

    def as_metadata(self) -> dict[str, Any]:
        """Chat-model ``metadata`` carrying these traits."""
        return {_KEY: dataclasses.asdict(self)}
