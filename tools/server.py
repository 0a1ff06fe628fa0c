"""The graph that ``langgraph.json`` serves (``langgraph dev``, LangGraph Platform).

Built here, where it is served, so that importing the package compiles
nothing; the server hands it the default web tools and adds persistence.
"""

from __future__ import annotations

from langfusion.graph.fusion import build_fusion_graph
from langfusion.tools.web import web_tools

fusion_graph = build_fusion_graph(web_tools=web_tools)
