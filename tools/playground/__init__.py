"""The fusion playground: a local web page to ask, watch the panel deliberate and read the analysis.

``langfusion serve`` runs it on 127.0.0.1. The page streams each run from the
graph's own stream (server-sent events): one card per panel model filling in
live, then the judge and the synthesis; then the analysis, the panel answers,
the rendered answer and the usage. Runs are kept in SQLite and can be reopened
or downloaded as the SPEC result JSON. The API key stays on the server.

Example:
    ```python
    from langfusion.tools.playground import bind, create_app, serve

    sock = bind("127.0.0.1", 8765)
    serve(create_app(defaults={"preset": "budget"}), sock)
    ```
"""

from __future__ import annotations

from langfusion.tools.playground.app import create_app, default_db_path
from langfusion.tools.playground.serve import bind, serve, url_of

__all__ = ["bind", "create_app", "default_db_path", "serve", "url_of"]
