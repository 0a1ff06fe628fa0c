"""What a model costs: per-token prices from an endpoint's model list, or from the user.

OpenRouter lists every model it serves at ``GET {base_url}/models``, with its
prices per token (``pricing.prompt``, ``pricing.completion``, decimal strings)
and its limits (``context_length``, ``top_provider.max_completion_tokens``).
:class:`PriceList` fetches that list once per base URL and keeps it for a
while: concurrent runs wait on the one fetch, and a list that cannot be had
leaves the endpoint's slugs unpriced, never a run failed.
"""

from __future__ import annotations

import asyncio
import logging
import math
import threading
import time
from collections.abc import Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from langfusion.graph.models.pools import shared_sync_client

__all__ = ["FREE", "PRICES_TTL_S", "PriceList", "Pricing", "PricesModels"]

logger = logging.getLogger(__name__)

# How long a fetched list stays valid, and how long an endpoint whose list could
# not be had stays unpriced before the next try.
PRICES_TTL_S = 3600.0
UNPRICED_TTL_S = 60.0
FETCH_TIMEOUT_S = 10.0


@dataclass(frozen=True)
class Pricing:
    """What a model costs per token, in US dollars, and what it can write per call.

    Args:
        prompt_per_token: Price of one prompt (input) token.
        completion_per_token: Price of one completion (output) token, reasoning included.
        max_completion_tokens: The most a call can write, where known; it
            bounds the projection of a call that no cap limits.
        context_length: The model's context, prompt and completion together, where known.

    Raises:
        ValueError: A price that is negative or not a finite number, or a limit below 1.
    """

    prompt_per_token: float
    completion_per_token: float
    max_completion_tokens: int | None = field(default=None, kw_only=True)
    context_length: int | None = field(default=None, kw_only=True)

    def __post_init__(self) -> None:
        for name in ("prompt_per_token", "completion_per_token"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise ValueError(f"Pricing.{name} must be a number of US dollars; got {value!r}.")
            if not math.isfinite(value) or value < 0:
                raise ValueError(f"Pricing.{name} must be a finite price of 0 or more.")
        for name in ("max_completion_tokens", "context_length"):
            value = getattr(self, name)
            if value is not None and (
                isinstance(value, bool) or not isinstance(value, int) or value < 1
            ):
                raise ValueError(f"Pricing.{name} must be a positive integer; got {value!r}.")

    @property
    def free(self) -> bool:
        """Whether no token costs anything (the embedded model)."""
        return self.prompt_per_token == 0 and self.completion_per_token == 0

    def cost(self, input_tokens: int, output_tokens: int) -> float:
        """What ``input_tokens`` prompt and ``output_tokens`` completion tokens cost."""
        return input_tokens * self.prompt_per_token + output_tokens * self.completion_per_token


# The embedded model runs on this machine: its tokens cost nothing.
FREE = Pricing(0.0, 0.0)


@runtime_checkable
class PricesModels(Protocol):
    """A model factory that knows what its slugs cost and how much a call may write.

    The graph asks it for the price of every call whose provider reported no
    cost (the result's ``cost_source: "price_table"``), and for prices and
    completion caps when it projects a run's worst case (``estimate_cost``,
    ``max_cost_usd``).
    """

    async def price_of(self, slug: str) -> Pricing | None:
        """What ``slug`` costs per token; ``None`` when no price is known."""
        ...

    def completion_cap(self, slug: str, *, role: str, requested: int | None) -> int | None:
        """The completion cap a ``role`` call of ``slug`` is sent (``requested``: the run's).

        ``None`` when the call goes out without one (the provider's default applies).
        """
        ...


@dataclass(frozen=True)
class _Listing:
    """One endpoint's model list as fetched: its prices by slug, and until when they hold."""

    prices: Mapping[str, Pricing]
    expires: float


# Fetches run here, off every event loop, so that runs on any loop (or none) share them.
_FETCHER = ThreadPoolExecutor(max_workers=2, thread_name_prefix="langfusion-prices")


class PriceList:
    """Prices from ``GET {base_url}/models``, fetched once per base URL and kept for a while.

    Args:
        ttl_s: How long a fetched list is used before it is fetched again.
        unpriced_ttl_s: How long an endpoint whose list could not be had stays
            unpriced before the next try.
        timeout_s: Deadline of one fetch.
    """

    def __init__(
        self,
        *,
        ttl_s: float = PRICES_TTL_S,
        unpriced_ttl_s: float = UNPRICED_TTL_S,
        timeout_s: float = FETCH_TIMEOUT_S,
    ) -> None:
        self._ttl_s = ttl_s
        self._unpriced_ttl_s = unpriced_ttl_s
        self._timeout_s = timeout_s
        self._lock = threading.Lock()
        self._listings: dict[str, _Listing] = {}
        self._fetching: dict[str, Future[_Listing]] = {}

    async def price_of(self, base_url: str, slug: str) -> Pricing | None:
        """``slug``'s price on the endpoint at ``base_url``; ``None`` when it lists none.

        Only the first caller after the list expires waits for a fetch; callers
        that come while it runs wait for the same one.
        """
        listing = self._listings.get(base_url)
        if listing is None or listing.expires <= time.monotonic():
            # Shielded: a run cancelled while waiting must not cancel the fetch others wait on.
            listing = await asyncio.shield(asyncio.wrap_future(self._refresh(base_url)))
        return _lookup(listing.prices, slug)

    def _refresh(self, base_url: str) -> Future[_Listing]:
        with self._lock:
            listing = self._listings.get(base_url)
            if listing is not None and listing.expires > time.monotonic():
                done: Future[_Listing] = Future()
                done.set_result(listing)  # fetched while this caller came
                return done
            future = self._fetching.get(base_url)
            if future is None:
                future = _FETCHER.submit(self._fetch, base_url)
                self._fetching[base_url] = future
            return future

    def _fetch(self, base_url: str) -> _Listing:
        listing = _Listing({}, time.monotonic() + self._unpriced_ttl_s)
        try:
            response = shared_sync_client(base_url).get(
                f"{base_url}/models", timeout=self._timeout_s
            )
            response.raise_for_status()
            listing = _Listing(listed_prices(response.json()), time.monotonic() + self._ttl_s)
        except Exception as exc:  # noqa: BLE001 - any failure leaves the endpoint unpriced
            logger.warning(
                "No prices from %s/models (%s): its models stay unpriced.", base_url, exc
            )
        finally:
            with self._lock:
                self._listings[base_url] = listing
                self._fetching.pop(base_url, None)
        return listing


def listed_prices(body: object) -> dict[str, Pricing]:
    """The prices of an OpenRouter-style ``/models`` body, by model id.

    A model whose price is missing, unreadable or negative (OpenRouter's
    ``"-1"`` for a router priced per underlying call) is left out: unpriced.
    """
    data = body.get("data") if isinstance(body, dict) else None
    prices: dict[str, Pricing] = {}
    for entry in data if isinstance(data, list) else []:
        if not isinstance(entry, dict) or not isinstance(entry.get("id"), str):
            continue
        pricing = entry.get("pricing")
        if not isinstance(pricing, dict):
            continue
        prompt, completion = _price(pricing.get("prompt")), _price(pricing.get("completion"))
        if prompt is None or completion is None:
            continue
        top = entry.get("top_provider")
        top = top if isinstance(top, dict) else {}
        price = Pricing(
            prompt,
            completion,
            max_completion_tokens=_limit(top.get("max_completion_tokens")),
            context_length=_limit(entry.get("context_length")) or _limit(top.get("context_length")),
        )
        prices[entry["id"]] = price
        canonical = entry.get("canonical_slug")
        if isinstance(canonical, str):
            prices.setdefault(canonical, price)
    return prices


def _lookup(prices: Mapping[str, Pricing], slug: str) -> Pricing | None:
    """``slug``'s price; a sample of a model (``slug#2``) costs what the model does."""
    return prices.get(slug) or prices.get(slug.partition("#")[0])


def _price(raw: Any) -> float | None:
    try:
        value = float(raw)
    except (TypeError, ValueError):
        return None
    return value if math.isfinite(value) and value >= 0 else None


def _limit(raw: Any) -> int | None:
    return raw if isinstance(raw, int) and not isinstance(raw, bool) and raw > 0 else None
