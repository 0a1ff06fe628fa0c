"""The search backends behind `web_search`: SearxNG, Tavily, Brave and the keyless ddgs."""

from __future__ import annotations

import asyncio
import html
import re
from dataclasses import dataclass
from typing import Any, Literal, Protocol, get_args

import httpx

SearchBackendName = Literal["auto", "searxng", "tavily", "brave", "ddgs"]
"""Search backends `web_search` can use; `auto` picks from what is configured."""

SEARCH_BACKENDS: tuple[str, ...] = get_args(SearchBackendName)


@dataclass(frozen=True)
class Hit:
    """One search result, cleaned and cut to length."""

    title: str
    url: str
    snippet: str


class BackendError(Exception):
    """A search backend failed; the message is safe to show (no secrets)."""


class _TextSearchClient(Protocol):
    def text(self, query: str, **kwargs: Any) -> list[dict[str, Any]]: ...


def _new_ddgs_client(timeout: float) -> _TextSearchClient:
    """Build the keyless metasearch client; tests replace this function."""
    try:
        from ddgs import DDGS
    except ImportError:
        raise BackendError("the ddgs package is not installed (pip install ddgs)") from None
    return DDGS(timeout=max(1, round(timeout)))


_TAGS = re.compile(r"<[^>]+>")


def _clean(text: Any, limit: int) -> str:
    plain = " ".join(html.unescape(_TAGS.sub("", str(text or ""))).split())
    return plain if len(plain) <= limit else plain[: limit - 1].rstrip() + "…"


def _hits(items: Any, title_key: str, url_key: str, snippet_key: str, limit: int) -> list[Hit]:
    if not isinstance(items, list):
        raise BackendError("answered with JSON of an unexpected shape")
    hits = []
    for item in items:
        if not isinstance(item, dict) or not item.get(url_key):
            continue
        hits.append(
            Hit(
                title=_clean(item.get(title_key), 200) or "(untitled)",
                url=_clean(item.get(url_key), 2000),
                snippet=_clean(item.get(snippet_key), 400),
            )
        )
    return hits[:limit]


def search_client(timeout: float) -> httpx.AsyncClient:
    """The HTTP client of one search: no proxies from the environment, no redirects."""
    return httpx.AsyncClient(
        timeout=httpx.Timeout(timeout), trust_env=False, follow_redirects=False
    )


async def _get_json(client: httpx.AsyncClient, method: str, url: str, **kwargs: Any) -> Any:
    try:
        # A backend request carries its key (Brave's X-Subscription-Token, Tavily's
        # bearer token, a SearxNG URL's user:password), and a redirect followed would
        # hand it to wherever the backend points (httpx drops only Authorization
        # when leaving the origin). So a redirect is a failed search.
        response = await client.request(method, url, follow_redirects=False, **kwargs)
    except httpx.TimeoutException:
        raise BackendError("timed out") from None
    except httpx.ConnectError:
        raise BackendError("could not connect") from None
    except httpx.HTTPError as exc:
        raise BackendError(f"request failed ({type(exc).__name__})") from None
    status = response.status_code
    if 300 <= status < 400:
        raise BackendError(_redirect_refused(response))
    if status in (401, 403):
        raise BackendError(f"refused the request (HTTP {status}); check its API key or settings")
    if status == 429:
        raise BackendError("is rate limiting requests (HTTP 429)")
    if status >= 400:
        raise BackendError(f"answered HTTP {status}")
    try:
        return response.json()
    except ValueError:
        raise BackendError("did not answer with JSON") from None


def _redirect_refused(response: httpx.Response) -> str:
    location, target = response.headers.get("location"), ""
    try:
        if location:
            moved = response.url.join(location)
            target = f" to {moved.scheme}://{moved.netloc.decode('ascii')}"
    except (httpx.InvalidURL, ValueError):
        pass
    return (
        f"answered with a redirect (HTTP {response.status_code}){target}, which web_search "
        "does not follow, so that its key is never sent elsewhere; set the backend's URL "
        "to the address it moved to"
    )


def _join(base: str, path: str) -> str:
    return base.rstrip("/") + path


@dataclass(frozen=True)
class SearchConfig:
    """The backend settings of one search, read at call time."""

    searxng_url: str | None
    tavily_key: str | None
    brave_key: str | None

    def secrets(self) -> list[str]:
        """The keys set, to take out of anything shown."""
        return [key for key in (self.tavily_key, self.brave_key) if key]


async def search_searxng(
    client: httpx.AsyncClient, query: str, base_url: str | None, limit: int
) -> list[Hit]:
    """Query a SearxNG instance's JSON API."""
    assert base_url is not None
    data = await _get_json(
        client,
        "GET",
        _join(base_url, "/search"),
        params={"q": query, "format": "json"},
        headers={"Accept": "application/json"},
    )
    results = data.get("results") if isinstance(data, dict) else None
    return _hits(results, "title", "url", "content", limit)


async def search_tavily(
    client: httpx.AsyncClient, query: str, base_url: str, key: str | None, limit: int
) -> list[Hit]:
    """Query Tavily's search API with its key."""
    data = await _get_json(
        client,
        "POST",
        _join(base_url, "/search"),
        json={"query": query, "max_results": limit, "search_depth": "basic"},
        headers={"Authorization": f"Bearer {key}"},
    )
    results = data.get("results") if isinstance(data, dict) else None
    return _hits(results, "title", "url", "content", limit)


async def search_brave(
    client: httpx.AsyncClient, query: str, base_url: str, key: str | None, limit: int
) -> list[Hit]:
    """Query Brave's web search API with its key."""
    data = await _get_json(
        client,
        "GET",
        _join(base_url, "/res/v1/web/search"),
        params={"q": query, "count": limit},
        headers={"Accept": "application/json", "X-Subscription-Token": key or ""},
    )
    if not isinstance(data, dict):
        raise BackendError("answered with JSON of an unexpected shape")
    web = data.get("web") or {}
    results = web.get("results", []) if isinstance(web, dict) else None
    return _hits(results, "title", "url", "description", limit)


async def search_ddgs(query: str, timeout: float, limit: int) -> list[Hit]:
    """Query the keyless ddgs metasearch, on a thread and within ``timeout``."""
    from ddgs.exceptions import DDGSException, RatelimitException, TimeoutException

    client = _new_ddgs_client(timeout)
    try:
        # ddgs queries several engines on its own threads; bound the whole search too.
        async with asyncio.timeout(timeout * 2):
            items = await asyncio.to_thread(client.text, query, max_results=limit)
    except RatelimitException:
        raise BackendError("is rate limiting requests") from None
    except (TimeoutException, TimeoutError):
        raise BackendError("timed out") from None
    except DDGSException as exc:
        if str(exc) == "No results found.":
            return []
        raise BackendError(f"failed ({_clean(exc, 200)})") from None
    return _hits(items, "title", "href", "body", limit)
