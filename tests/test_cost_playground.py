"""The playground page shows a run's worst case before Ask, and its list-priced costs after."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from tests.playground_harness import SECRET, Playground, WatchingServer, scripted_server

pytestmark = pytest.mark.slow  # a real Chromium

playwright_api = pytest.importorskip("playwright.sync_api")
CHROMIUM = shutil.which("chromium")
if CHROMIUM is None:
    pytest.skip("Debian's chromium is not installed (.ci/run installs it)", allow_module_level=True)

FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run"]


@pytest.fixture
def server(monkeypatch: pytest.MonkeyPatch) -> Iterator[WatchingServer]:
    monkeypatch.setenv("LANGFUSION_TOKEN_COUNTING", "estimate")
    monkeypatch.setenv("OPENROUTER_API_KEY", SECRET)
    running = scripted_server()
    prices = {"prompt": "0.000001", "completion": "0.000004"}
    running.models = [
        {"id": slug, "pricing": prices, "top_provider": {"max_completion_tokens": 1000}}
        for slug in ("p/fast", "p/mid", "p/slow", "judge/model", "synth/model")
    ]
    # The page's estimate reads prices through the default registry, on this endpoint.
    monkeypatch.setenv("OPENROUTER_BASE_URL", running.base_url)
    try:
        yield running
    finally:
        running.stop()


@pytest.fixture
def page(tmp_path: Path) -> Iterator[Any]:
    with playwright_api.sync_playwright() as driver:
        browser = driver.chromium.launch(executable_path=CHROMIUM, headless=True, args=FLAGS)
        context = browser.new_context()
        context.set_default_timeout(20_000)
        context.route(
            lambda url: urlsplit(url).hostname not in ("127.0.0.1", "localhost"),
            lambda route: route.abort(),
        )
        yield context.new_page()
        browser.close()


def test_the_worst_case_shows_before_ask_and_list_prices_after(
    page: Any, server: WatchingServer, tmp_path: Path
) -> None:
    with Playground(server, tmp_path / "runs.sqlite") as playground:
        page.goto(playground.url + "/")
        page.wait_for_selector("body[data-ready=true]")
        page.fill("#question", "Where do economists disagree about a carbon tax?")
        page.click("#estimate")
        line = page.wait_for_selector("#estimate-line:not([hidden])")
        assert line.inner_text().startswith("Worst case at most $")
        assert float(line.get_attribute("data-total")) > 0
        assert server.requests == []  # estimating called no model

        page.click("#ask")
        page.wait_for_selector("#run-state[data-state=done]")
        total = page.locator('#usage-table tr[data-step="total"] td').last.inner_text()
        assert total.startswith("≈$")
        assert "at list prices" in page.locator("#usage-table caption").inner_text()
