"""``with_fusion``: attach the fusion tool to a chat model."""

from __future__ import annotations

from typing import Any

from langchain_core.language_models import BaseChatModel, LanguageModelInput
from langchain_core.messages import AIMessage
from langchain_core.runnables import Runnable

from langfusion.graph.models import ModelFactory, cancellable, default_registry
from langfusion.tools.fusion_tool import FusionTool


def model_slug(model: BaseChatModel) -> str | None:
    """The slug a chat model calls itself by (``model_name`` or ``model``), if it says."""
    for attribute in ("model_name", "model", "model_id"):
        value = getattr(model, attribute, None)
        if isinstance(value, str) and value:
            return value
    return None


class _CallerAsJudge:
    """A factory that serves the calling model itself as the judge, at temperature 0.

    Only the judge: a panel (or synthesis) call for the same slug goes to the
    base factory, so the panel still gets its own, independent model.
    """

    def __init__(self, base: ModelFactory, slug: str, model: BaseChatModel) -> None:
        self._base = base
        self._slug = slug
        judge = cancellable(model)
        self._judge = (
            judge.model_copy(update={"temperature": 0.0})
            if "temperature" in type(judge).model_fields
            else judge
        )

    def __call__(self, slug: str, /, **settings: Any) -> BaseChatModel:
        if slug == self._slug and settings.get("role") == "judge":
            return self._judge
        return self._base(slug, **settings)


def with_fusion(
    llm: BaseChatModel, /, *, force: bool = False, **fusion_params: Any
) -> Runnable[LanguageModelInput, AIMessage]:
    """Bind the ``fusion`` tool to ``model``.

    Where the model's slug is known and no judge is named, the model itself
    judges (a second-opinion loop): the panel answers, it compares, and then
    it writes the final answer from the tool's result.

    Args:
        llm: The calling chat model (it must support tool calling).
        force: Set ``tool_choice`` so that every request calls fusion.
        **fusion_params: ``FusionTool`` parameters: every ``FusionContext``
            parameter (``analysis_models``, ``model`` for the judge, ...) and
            ``model_factory``. An unknown keyword raises ``ValueError``.

    Returns:
        The model with the tool bound, ready for ``invoke`` or an agent loop.
    """
    slug = model_slug(llm)
    if fusion_params.get("model") is None and slug is not None:
        base = fusion_params.get("model_factory") or default_registry
        fusion_params["model"] = slug
        fusion_params["model_factory"] = _CallerAsJudge(base, slug, llm)
    tool = FusionTool(**fusion_params)
    return llm.bind_tools([tool], tool_choice="fusion" if force else None)
