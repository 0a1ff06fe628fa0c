"""``langfusion``: deliberate on a question from the command line.

::

    langfusion ask "Where do economists disagree about a carbon tax?"
    echo "Is nuclear power safer per TWh than wind?" | langfusion ask - --preset budget --json
    langfusion serve    # the playground: a local web page on http://127.0.0.1:8765/

While the run goes, one line per panel model, the judge and the synthesis
shows what each is doing (on stderr, live when it is a terminal); then the
panel, the analysis and the answer are printed on stdout, rendered on a
terminal and as Markdown text in a file or a pipe. With ``--json`` stdout
holds only ``{"result": <the SPEC result>, "answer": "..."}``. Every
``FusionContext`` parameter is an option (``langfusion ask --help``).

Exit status: 0 when the fusion ran (``"status": "ok"``), 1 when it produced
nothing usable, 2 on a usage error, 130 when interrupted.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from langfusion.tools.cli.args import build_parser
from langfusion.tools.cli.main import main

if TYPE_CHECKING:
    from langfusion.graph import FusionGraph

__all__ = ["FusionGraph", "build_parser", "main"]


def __getattr__(name: str) -> Any:
    # The graph's type needs langgraph, which `langfusion --help` should not wait for.
    if name != "FusionGraph":
        raise AttributeError(f"module 'langfusion.tools.cli' has no attribute {name!r}")
    from langfusion.graph import FusionGraph

    return FusionGraph
