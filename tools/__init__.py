"""What an agent binds: the fusion tool, the plugin, the model alias and the web tools."""

from langfusion.tools.chat_model import FusionChatModel, FusionError
from langfusion.tools.fusion_tool import FUSION_DESCRIPTION, FusionTool, FusionToolInput
from langfusion.tools.plugin import with_fusion

__all__ = [
    "FUSION_DESCRIPTION",
    "FusionChatModel",
    "FusionError",
    "FusionTool",
    "FusionToolInput",
    "with_fusion",
]
