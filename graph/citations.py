"""The pages a run's models fetched or cited: read from tool artifacts and annotations."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from langchain_core.messages import BaseMessage

from langfusion.graph.schema import Citation


def from_artifact(artifact: object) -> Citation | None:
    """The page a tool result stands for, when its artifact names one (``{"url", "title"}``)."""
    if not isinstance(artifact, Mapping):
        return None
    url = artifact.get("url")
    if not isinstance(url, str) or not url.startswith(("http://", "https://")):
        return None
    title = artifact.get("title")
    return Citation(url=url, title=title if isinstance(title, str) and title else None)


def from_annotations(message: BaseMessage) -> list[Citation]:
    """The ``url_citation`` annotations of a reply.

    Both shapes are read: chat completions nest the fields
    (``{"type": "url_citation", "url_citation": {"url", "title"}}``), the
    Responses API does not.
    """
    annotations = message.additional_kwargs.get("annotations")
    if not isinstance(annotations, list):
        annotations = message.response_metadata.get("annotations")
    found: list[Citation] = []
    for annotation in annotations if isinstance(annotations, list) else []:
        if not isinstance(annotation, Mapping) or annotation.get("type") != "url_citation":
            continue
        fields: Any = annotation.get("url_citation") or annotation
        citation = from_artifact(fields)
        if citation is not None:
            found.append(citation)
    return found


def merged(citations: Iterable[Citation]) -> list[Citation]:
    """``citations`` deduplicated by URL, in first-seen order, their models and titles merged."""
    by_url: dict[str, Citation] = {}
    for citation in citations:
        key = citation.url.split("#", 1)[0]
        seen = by_url.get(key)
        if seen is None:
            by_url[key] = Citation(
                url=key, title=citation.title, models=list(dict.fromkeys(citation.models))
            )
            continue
        seen.models = list(dict.fromkeys([*seen.models, *citation.models]))
        seen.title = seen.title or citation.title
    return list(by_url.values())


def credited(citations: Iterable[Citation], model: str) -> list[Citation]:
    """``citations`` attributed to ``model``."""
    return [c.model_copy(update={"models": [model]}) for c in citations]
