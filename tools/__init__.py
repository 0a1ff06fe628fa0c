"""What an agent binds: the fusion tool, the plugin, the model alias and the web tools."""

from langfusion.tools.chat_model import FusionChatModel, FusionError
from langfusion.tools.fusion_tool import FUSION_DESCRIPTION, FusionTool, FusionToolInput
from langfusion.tools.plugin import with_fusion
from langfusion.tools.web import WebFetchTool, WebSearchTool, web_fetch, web_search, web_tools

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
