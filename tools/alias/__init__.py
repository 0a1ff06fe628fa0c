"""The model alias: a chat model that runs the whole pipeline and answers with the synthesis."""

from langfusion.tools.alias.model import FusionChatModel
from langfusion.tools.alias.run import FusionError

__all__ = ["FusionChatModel", "FusionError"]
