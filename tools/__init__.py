"""What an agent binds: the fusion tool, the plugin, the model alias and the web tools.

Imports are lazy so that ``langfusion --help`` answers without loading the pipeline.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from langfusion.tools.alias import FusionChatModel, FusionError
    from langfusion.tools.fusion_tool import FUSION_DESCRIPTION, FusionTool, FusionToolInput
    from langfusion.tools.plugin import with_fusion
    from langfusion.tools.web import WebFetchTool, WebSearchTool, web_fetch, web_search, web_tools

_HOMES = {
    "FUSION_DESCRIPTION": "fusion_tool",
    "FusionChatModel": "alias",
    "FusionError": "alias",
    "FusionTool": "fusion_tool",
    "FusionToolInput": "fusion_tool",
    "WebFetchTool": "web",
    "WebSearchTool": "web",
    "web_fetch": "web",
    "web_search": "web",
    "web_tools": "web",
    "with_fusion": "plugin",
}

__all__ = [
    "FUSION_DESCRIPTION",
    "FusionChatModel",
    "FusionError",
    "FusionTool",
    "FusionToolInput",
    "WebFetchTool",
    "WebSearchTool",
    "web_fetch",
    "web_search",
    "web_tools",
    "with_fusion",
]


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module 'langfusion.tools' has no attribute {name!r}")
    value = getattr(import_module(f"langfusion.tools.{home}"), name)
    globals()[name] = value
    return value
