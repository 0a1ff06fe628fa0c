"""The answer as HTML that is safe to put in the page, whatever the model wrote."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from markdown_it import MarkdownIt
from markdown_it.renderer import RendererHTML
from markdown_it.token import Token
from markdown_it.utils import EnvType, OptionsDict

__all__ = ["answer_html"]

# Raw HTML in the text is escaped (html=False); markdown-it refuses javascript:,
# vbscript:, file: and data: links itself. Images stay text: a model-written
# image URL would make the browser fetch it, which leaks the page to that host.
_MARKDOWN = MarkdownIt("commonmark", {"html": False, "linkify": False}).enable("table")
_MARKDOWN.disable("image")


def _link_open(
    self: RendererHTML, tokens: Sequence[Token], idx: int, options: OptionsDict, env: EnvType
) -> str:
    tokens[idx].attrSet("rel", "noopener noreferrer nofollow")
    tokens[idx].attrSet("target", "_blank")
    return self.renderToken(tokens, idx, options, env)


_MARKDOWN.add_render_rule("link_open", _link_open)


def answer_html(text: str) -> str:
    """Render model-written Markdown to HTML with every tag and attribute escaped.

    Args:
        text: The answer, as the synthesis model wrote it.

    Returns:
        HTML holding only what Markdown itself produces (headings, lists,
        emphasis, code, tables, http(s) and mailto links).
    """
    rendered: Any = _MARKDOWN.render(text)
    return str(rendered)
