"""The OpenRouter-compatible HTTP API: fusion for every client, not only Python.

``langfusion serve`` serves it beside the playground, so that OpenRouter's own
SDKs, the OpenAI SDKs, ``curl`` or the hosted tool's quick start get fusion
by changing their base URL to ``http://HOST:PORT/api/v1`` (or ``/v1``):
``POST /chat/completions``, ``POST /responses`` and ``GET /models``, with the
server tool (``tools: [{"type": "openrouter:fusion"}]``), the alias
(``model: "openrouter/fusion"``) and the plugin (``plugins: [{"id": "fusion"}]``).

Example:
    ```python
    from starlette.applications import Starlette
    from langfusion.tools.api import BearerTokens, api_routes

    app = Starlette(routes=api_routes(tokens=BearerTokens(["my-token"])))
    ```
"""

from langfusion.tools.api.app import BASES, KEEPALIVE_S, api_routes
from langfusion.tools.api.auth import API_KEYS_ENV, BearerTokens, new_token
from langfusion.tools.api.errors import ApiError
from langfusion.tools.api.request import FUSION_ALIASES

__all__ = [
    "API_KEYS_ENV",
    "BASES",
    "FUSION_ALIASES",
    "KEEPALIVE_S",
    "ApiError",
    "BearerTokens",
    "api_routes",
    "new_token",
]
