"""`web_tools`: a configured `web_search` and `web_fetch` pair in one call."""

from __future__ import annotations

import ssl
from collections.abc import Iterable

from langchain_core.tools import BaseTool
from pydantic import SecretStr

from langfusion.tools.web.backends import SEARCH_BACKENDS, SearchBackendName
from langfusion.tools.web.fetch import WebFetchTool
from langfusion.tools.web.policy import DEFAULT_ALLOWED_PORTS
from langfusion.tools.web.search import WebSearchTool


def web_tools(
    *,
    allow_hosts: Iterable[str] | None = None,
    allow_ports: Iterable[int] | None = None,
    search_backend: SearchBackendName | None = None,
    max_results: int = 5,
    max_chars: int = 20_000,
    max_bytes: int = 5_000_000,
    fetch_timeout: float = 20.0,
    search_timeout: float = 15.0,
    searxng_url: str | None = None,
    tavily_api_key: str | SecretStr | None = None,
    brave_api_key: str | SecretStr | None = None,
    ssl_context: ssl.SSLContext | None = None,
) -> list[BaseTool]:
    """Build a configured `[web_search, web_fetch]` pair for an agent or the fusion panel.

    Args:
        allow_hosts: Non-public destinations `web_fetch` may visit, on any port:
            host names, `*.domain` wildcards, IP addresses or CIDR blocks.
            None allows public internet addresses only.
        allow_ports: Ports allowed for public destinations; None means
            80, 443, 8080 and 8443.
        search_backend: One of `auto`, `searxng`, `tavily`, `brave`, `ddgs`;
            None reads `LANGFUSION_SEARCH_BACKEND` at call time (default `auto`).
        max_results: Search results per query (1 to 20).
        max_chars: Characters of page text returned before cutting.
        max_bytes: Largest response body `web_fetch` reads.
        fetch_timeout: Seconds for a whole fetch, redirects included.
        search_timeout: Seconds for each search backend request.
        searxng_url: SearxNG base URL; None reads `SEARXNG_URL`.
        tavily_api_key: Tavily key; None reads `TAVILY_API_KEY`.
        brave_api_key: Brave Search key; None reads `BRAVE_SEARCH_API_KEY`.
        ssl_context: TLS settings for `web_fetch` (e.g. an internal CA).

    Returns:
        The `web_search` and `web_fetch` tools, in that order.

    Raises:
        ValueError: If an option is invalid (for example an unknown backend or
            a malformed `allow_hosts` entry).
    """
    if search_backend is not None and search_backend not in SEARCH_BACKENDS:
        raise ValueError(
            f"search_backend must be one of {', '.join(SEARCH_BACKENDS)}, got {search_backend!r}"
        )

    def secret(value: str | SecretStr | None) -> SecretStr | None:
        return SecretStr(value) if isinstance(value, str) else value

    search = WebSearchTool(
        backend=search_backend,
        max_results=max_results,
        timeout=search_timeout,
        searxng_url=searxng_url,
        tavily_api_key=secret(tavily_api_key),
        brave_api_key=secret(brave_api_key),
    )
    fetch = WebFetchTool(
        allow_hosts=tuple(allow_hosts or ()),
        allow_ports=frozenset(DEFAULT_ALLOWED_PORTS if allow_ports is None else allow_ports),
        max_chars=max_chars,
        max_bytes=max_bytes,
        timeout=fetch_timeout,
        ssl_context=ssl_context,
    )
    return [search, fetch]
