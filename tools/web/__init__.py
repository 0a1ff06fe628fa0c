"""Web search and web fetch tools for the panel and the judge.

`web_search` returns a short list of results from a configurable backend
(self-hosted SearxNG, Tavily, Brave, or the keyless `ddgs` metasearch).
`web_fetch` reads one page and returns its main text.

The fetcher is aimed by model output, so it treats every URL as hostile: it
only goes to public internet addresses (unless the caller allow-lists a host),
checks every redirect hop, resolves each host once and connects to exactly the
address it checked (defeating DNS rebinding), caps size, time and content
types, and sends no cookies or credentials. Everything either tool returns is
fenced and labelled as untrusted data.
"""

from langfusion.tools.web.backends import SEARCH_BACKENDS, SearchBackendName
from langfusion.tools.web.factory import web_tools
from langfusion.tools.web.fetch import WebFetchInput, WebFetchTool, web_fetch
from langfusion.tools.web.policy import DEFAULT_ALLOWED_PORTS
from langfusion.tools.web.search import WebSearchInput, WebSearchTool, web_search

__all__ = [
    "DEFAULT_ALLOWED_PORTS",
    "SEARCH_BACKENDS",
    "SearchBackendName",
    "WebFetchInput",
    "WebFetchTool",
    "WebSearchInput",
    "WebSearchTool",
    "web_fetch",
    "web_search",
    "web_tools",
]
