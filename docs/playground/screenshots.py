"""Take the README's playground screenshots: a run in flight, and the same run finished.

The models are the scripted OpenAI-compatible server of the tests, on
127.0.0.1 (no key, no network): four panel slugs with latencies, one of which
is rate limited, a judge verdict and a Markdown answer. Debian's chromium
draws the page. Run from the repository root::

    python docs/playground/screenshots.py
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from aiohttp import web  # noqa: E402
from playwright.sync_api import sync_playwright  # noqa: E402

from tests.openai_server import Reply  # noqa: E402
from tests.playground_harness import Playground, scripted_server  # noqa: E402
from tests.test_playground_browser import FLAGS  # noqa: E402

OUT = Path(__file__).parent
JUDGE = "~anthropic/claude-sonnet-latest"
QUESTION = "Where do economists disagree about a carbon tax?"
PANEL = {
    "~anthropic/claude-opus-latest": (
        4.0,
        "Most economists agree a carbon tax is the cheapest way to cut emissions: it puts "
        "a price on the external cost and lets firms find the cheapest cuts.\n\nThe real "
        "disagreements are about the rate (a social cost of carbon of $50 or $200 a tonne), "
        "what to do with the revenue, and whether it hurts growth. With revenue recycled "
        "into lower income taxes the growth effect is close to zero.",
    ),
    "~openai/gpt-latest": (
        1.2,
        "A carbon tax reduces emissions at the lowest cost, economists broadly agree. They "
        "disagree on its effect on growth (small but real, in most models), on how "
        "regressive it is before rebates, and on border adjustments to stop leakage.",
    ),
    "~google/gemini-pro-latest": (
        2.2,
        "Consensus: pricing carbon works. Disputes: the right price path, dividends versus "
        "tax cuts, competitiveness of trade-exposed industry, and whether a tax beats "
        "cap-and-trade when what matters is a guaranteed quantity of emissions.",
    ),
}
CITED = {
    "~google/gemini-pro-latest": [
        {
            "type": "url_citation",
            "url_citation": {
                "url": "https://example.org/carbon-pricing-survey",
                "title": "A survey of carbon pricing studies",
            },
        }
    ]
}
VERDICT = {
    "reasoning": "All three agree on efficiency; they differ on growth and on revenue use.",
    "consensus": [
        "A carbon tax cuts emissions at lower cost than regulation.",
        "How the revenue is used decides who bears the cost.",
    ],
    "contradictions": [
        {
            "topic": "effect on economic growth",
            "stances": [
                {"model": "Response A", "stance": "close to zero with revenue recycling"},
                {"model": "Response B", "stance": "small but real"},
            ],
        },
        {
            "topic": "tax or cap-and-trade",
            "stances": [
                {"model": "Response B", "stance": "a tax: a predictable price"},
                {"model": "Response C", "stance": "a cap when the quantity must be certain"},
            ],
        },
    ],
    "partial_coverage": [
        {"models": ["Response B", "Response C"], "point": "border carbon adjustments"},
        {"models": ["Response A"], "point": "the social cost of carbon sets the rate"},
    ],
    "unique_insights": [
        {"model": "Response C", "insight": "trade-exposed industry needs its own treatment"},
    ],
    "blind_spots": ["political durability of the tax once enacted"],
}
ANSWER = (
    "## Short answer\n\nEconomists largely **agree** that a carbon tax is the cheapest way "
    "to cut emissions. They disagree about:\n\n"
    "1. **The rate**: estimates of the social cost of carbon differ several-fold.\n"
    "2. **Growth**: near zero when revenue cuts other taxes; small but real otherwise.\n"
    "3. **The revenue**: dividends protect poorer households; tax cuts help growth more.\n"
    "4. **Tax or cap**: a tax fixes the price, a cap fixes the quantity.\n"
)


def _stream_slowly() -> None:
    """Send each streamed chunk 40 ms apart, so that the page is seen filling in."""
    write = web.StreamResponse.write

    async def slow_write(self: web.StreamResponse, data: bytes) -> None:
        await asyncio.sleep(0.04)
        await write(self, data)

    web.StreamResponse.write = slow_write  # type: ignore[method-assign]


def main() -> None:
    """Run one fusion in the page and save both screenshots next to this file."""
    os.environ["OPENROUTER_API_KEY"] = "sk-or-v1-screenshots-only"
    _stream_slowly()
    server = scripted_server()
    for slug, (latency, text) in PANEL.items():
        reply = Reply(text, completion_tokens=len(text) // 4, annotations=CITED.get(slug))
        server.script(slug, reply, latency_s=latency)
    server.script("deepseek/deepseek-v3.2", Reply("Rate limit exceeded", status=429))
    # The judge and then the synthesis, as when the judge also writes the answer.
    server.script(
        JUDGE,
        Reply(json.dumps(VERDICT), completion_tokens=310),
        Reply(ANSWER, completion_tokens=len(ANSWER) // 4),
        latency_s=0.8,
    )
    panel = [*PANEL, "deepseek/deepseek-v3.2"]
    profile = tempfile.mkdtemp(prefix="chromium-profile-")
    try:
        with (
            Playground(
                server,
                Path(profile) / "runs.sqlite",
                analysis_models=panel,
                model=JUDGE,
                synthesis_model=None,
                timeout_s=30,
            ) as playground,
            sync_playwright() as driver,
        ):
            context = driver.chromium.launch_persistent_context(
                profile, executable_path=shutil.which("chromium"), headless=True, args=FLAGS
            )
            page = context.new_page()
            page.set_viewport_size({"width": 1360, "height": 900})
            page.goto(playground.url + "/")
            page.wait_for_selector("body[data-ready=true]")
            page.fill("#question", QUESTION)
            page.click("#ask")
            page.wait_for_selector(
                '#panel-cards [data-model="~google/gemini-pro-latest"][data-state=done]'
            )
            streaming = '#panel-cards [data-model="~anthropic/claude-opus-latest"]'
            page.wait_for_function(
                f"() => document.querySelector('{streaming} .text').textContent.length > 160"
            )
            page.screenshot(path=str(OUT / "running.png"))
            page.wait_for_selector("#run-state[data-state=done]", timeout=30_000)
            page.screenshot(path=str(OUT / "finished.png"), full_page=True)
            context.close()
    finally:
        server.stop()
        shutil.rmtree(profile, ignore_errors=True)


if __name__ == "__main__":
    main()
