"""The playground in a real headless Chromium (Debian's), driven by Playwright, on loopback only.

The browser is Debian's ``chromium`` (``.ci/run`` installs it), never a
browser Playwright downloads. It may reach 127.0.0.1 alone: its resolver maps
every name but ``localhost`` and ``rebind.test`` (a DNS-rebinding stand-in
that points at 127.0.0.1) to nothing, and any request for another host is
aborted and recorded, which fails the test.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from langfusion.graph import FusionResult
from langfusion.tools.playground.store import RunStore
from tests.fakes import verdict
from tests.openai_server import Reply
from tests.playground_harness import SECRET, Playground, WatchingServer, scripted_server, wait_for

pytestmark = pytest.mark.slow  # a real Chromium per test

playwright_api = pytest.importorskip("playwright.sync_api")
CHROMIUM = shutil.which("chromium")
if CHROMIUM is None:
    pytest.skip("Debian's chromium is not installed (.ci/run installs it)", allow_module_level=True)

QUESTION = "Where do economists disagree about a carbon tax?"
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--host-resolver-rules="
    "MAP rebind.test 127.0.0.1, MAP * ~NOTFOUND, EXCLUDE localhost, EXCLUDE 127.0.0.1",
]
LOOPBACK = {"127.0.0.1", "localhost", "rebind.test", "[::1]", "::1"}
SCREENSHOTS = os.environ.get("PLAYGROUND_SCREENSHOTS")

# Every data-state a card takes, in order, as the page sets it.
RECORD_TRANSITIONS = """
window.__transitions = [];
new MutationObserver((records) => {
  for (const r of records) {
    const name = r.target.dataset.model || r.target.dataset.role;
    const now = r.target.getAttribute("data-state");
    const last = window.__transitions.filter((t) => t[0] === name).pop();
    if (name && (!last || last[1] !== now)) window.__transitions.push([name, now]);
  }
}).observe(document, {subtree: true, attributes: true, attributeFilter: ["data-state"]});
"""


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    profile = tmp_path_factory.mktemp("chromium-profile")
    outside: list[str] = []
    with playwright_api.sync_playwright() as driver:
        context = driver.chromium.launch_persistent_context(
            str(profile), executable_path=CHROMIUM, headless=True, args=FLAGS
        )
        context.set_default_timeout(20_000)

        def refuse(route: Any) -> None:
            outside.append(route.request.url)
            route.abort()

        context.route(lambda url: urlsplit(url).hostname not in LOOPBACK, refuse)
        context.add_init_script(RECORD_TRANSITIONS)
        yield context
        context.close()
    assert outside == [], f"the browser tried to reach beyond loopback: {outside}"


@pytest.fixture
def server() -> Iterator[WatchingServer]:
    running = scripted_server()
    try:
        yield running
    finally:
        running.stop()


@pytest.fixture
def playground(
    server: WatchingServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Playground]:
    monkeypatch.setenv("OPENROUTER_API_KEY", SECRET)
    with Playground(server, tmp_path / "runs.sqlite") as running:
        yield running


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    page = browser.new_page()
    yield page
    if not page.is_closed():
        page.close()


def card(model: str, inner: str = "", *, state: str | None = None) -> str:
    """The selector of a panel model's card (or of something inside it)."""
    selector = f'#panel-cards [data-model="{model}"]' + (f"[data-state={state}]" if state else "")
    return f"{selector} {inner}".strip()


def ask(page: Any, playground: Playground, question: str = QUESTION, panel: str = "") -> None:
    page.goto(playground.url + "/")
    page.wait_for_selector("body[data-ready=true]")
    page.fill("#question", question)
    if panel:
        page.click("#settings summary")
        page.fill("#panel-models", panel)
    page.click("#ask")


def wait_finished(page: Any) -> str:
    page.wait_for_selector("#run-state[data-state=done], #run-state[data-state=error]")
    return str(page.get_attribute("#run-state", "data-state"))


def transitions(page: Any) -> list[tuple[str, str]]:
    return [tuple(t) for t in page.evaluate("window.__transitions")]


def result_of(page: Any, playground: Playground) -> dict[str, Any]:
    href = page.get_attribute("#download", "href")
    response = page.request.get(playground.url + href)
    assert response.ok and "attachment" in response.headers["content-disposition"]
    data: dict[str, Any] = response.json()
    return data


def texts(page: Any, selector: str) -> list[str]:
    return [t.strip() for t in page.locator(selector).all_inner_texts()]


def shoot(page: Any, name: str) -> None:
    if SCREENSHOTS:
        page.screenshot(path=str(Path(SCREENSHOTS) / name), full_page=True)


def test_ask_watch_the_panel_deliberate_and_read_the_analysis(
    page: Any, playground: Playground, server: WatchingServer
) -> None:
    server.script("p/gone", Reply("no such model", status=404))
    page.set_viewport_size({"width": 1280, "height": 900})
    ask(page, playground, panel="p/slow, p/fast, p/mid, p/gone")
    page.wait_for_selector(card("p/mid", state="done"))
    assert page.get_attribute(card("p/slow"), "data-state") in ("waiting", "streaming")
    shoot(page, "playground-running.png")
    assert wait_finished(page) == "done"
    shoot(page, "playground-finished.png")

    seen = transitions(page)
    done = [name for name, state in seen if state == "done" and name.startswith("p/")]
    assert done == ["p/fast", "p/mid", "p/slow"]  # the order the latencies dictate
    for model in ("p/fast", "p/mid", "p/slow"):
        states = [state for name, state in seen if name == model]
        assert states.index("streaming") < states.index("done"), states
    assert ("p/gone", "failed") in seen and ("p/gone", "done") not in seen
    gone = page.locator(card("p/gone", ".status")).inner_text()
    assert "model_not_found" in gone and "HTTP 404" in gone
    assert [name for name, state in seen if state == "done"][-2:] == ["judge", "synthesis"]

    result = result_of(page, playground)
    analysis = result["analysis"]
    assert texts(page, "#consensus li") == analysis["consensus"]
    assert texts(page, "#blind-spots li") == analysis["blind_spots"]
    # the stance matrix: topic by model, each cell that model's stance (or a dash)
    (contradiction,) = analysis["contradictions"]
    row = page.locator("#contradictions tbody tr").first
    assert row.locator("th").inner_text() == contradiction["topic"]
    stances = {s["model"]: s["stance"] for s in contradiction["stances"]}
    columns = [c.get_attribute("data-model") for c in row.locator("td").all()]
    assert columns == ["p/slow", "p/fast", "p/mid"]  # the models that answered, in panel order
    cells = dict(zip(columns, texts(page, "#contradictions tbody tr >> nth=0 >> td"), strict=True))
    assert cells == {m: stances.get(m, "—") for m in columns}
    (partial,) = analysis["partial_coverage"]
    covered = page.locator('#partial-coverage td[data-covered="yes"]').all()
    assert [c.get_attribute("data-model") for c in covered] == partial["models"]
    (insight,) = analysis["unique_insights"]
    section = page.locator(f'#unique-insights section[data-model="{insight["model"]}"]')
    assert section.locator("li").inner_text() == insight["insight"]
    # each raw response in its own tab
    assert texts(page, "#response-tabs [role=tab]") == ["p/slow", "p/fast", "p/mid"]
    page.click('#response-tabs [data-model="p/mid"]')
    assert (
        page.locator("#response-panes pre:visible").inner_text() == "The middle panelist's answer."
    )
    # the answer as rendered Markdown, and the usage
    assert page.locator("#answer h2").inner_text() == "Short answer"
    assert page.locator("#answer strong").inner_text() == "depends"
    total = page.locator('#usage-table tr[data-step="total"] td').nth(4).inner_text()
    assert total == f"{result['usage']['total']['total_tokens']:,}"
    assert page.locator('#usage-table tr[data-step="panel"]').count() == 3
    assert SECRET not in page.content()


def test_reopen_a_past_run_after_a_reload(page: Any, playground: Playground) -> None:
    ask(page, playground)
    wait_finished(page)
    answer = page.locator("#answer").inner_html()
    run_hash = urlsplit(page.url).fragment
    page.reload()
    assert wait_finished(page) == "done"  # the address names the run: it reopens
    assert page.locator("#answer").inner_html() == answer
    page.goto(playground.url + "/")
    page.wait_for_selector("body[data-ready=true]")
    assert page.locator("#run").is_hidden()
    listed = page.locator("#run-list button")
    assert listed.count() == 1 and QUESTION in listed.inner_text()
    listed.click()
    assert wait_finished(page) == "done"
    assert urlsplit(page.url).fragment == run_hash
    assert page.locator("#answer").inner_html() == answer
    assert page.locator(card("p/slow")).get_attribute("data-state") == "done"
    assert page.locator(card("p/slow", ".text")).inner_text() == "The slow panelist's answer."


def test_model_written_markup_is_shown_as_text_and_runs_nothing(
    page: Any, playground: Playground, server: WatchingServer
) -> None:
    img = "<img src=x onerror=\"window.__pwned='{}'\">"
    server.script("p/fast", "Look: " + img.format("panel"))
    server.script(
        "synth/model",
        "<script>window.__pwned='answer'</script>" + img.format("answer") + "\n\n**safe** text",
    )
    server.script(
        "judge/model",
        verdict(consensus=[img.format("consensus")], blind_spots=["<svg onload=alert(1)>"]),
    )
    question = "<b onmouseover=\"window.__pwned='question'\">bold?</b>"
    ask(page, playground, question=question, panel="p/fast, p/mid")
    assert wait_finished(page) == "done"
    page.hover("#run-question")
    assert page.evaluate("window.__pwned") is None
    assert page.locator("main img, main script, main svg, main b").count() == 0
    assert page.locator(card("p/fast", ".text")).inner_text() == "Look: " + img.format("panel")
    assert page.locator("#consensus li").inner_text() == img.format("consensus")
    assert page.locator("#blind-spots li").inner_text() == "<svg onload=alert(1)>"
    assert page.locator("#run-question").inner_text() == question
    answer = page.locator("#answer").inner_text()
    assert "<script>window.__pwned='answer'</script>" in answer and "safe" in answer
    assert page.locator("#answer strong").inner_text() == "safe"
    assert question in page.locator("#run-list").inner_text()


def test_a_foreign_page_or_host_is_refused(
    page: Any, playground: Playground, server: WatchingServer
) -> None:
    attack = f"""<!doctype html><script>
      const body = JSON.stringify({{question: "spend their key"}});
      Promise.allSettled([
        fetch("{playground.url}/api/runs", {{method: "POST", mode: "no-cors", body,
          headers: {{"Content-Type": "text/plain"}}}}),
        fetch("{playground.url}/api/runs", {{method: "POST", body,
          headers: {{"Content-Type": "application/json"}}}}),
      ]).then(() => {{ document.title = "sent"; }});
    </script><a id="open" href="{playground.url}/">the playground</a>"""
    server.pages["/attack.html"] = ("text/html", attack)
    page.goto(f"{server.root_url}/attack.html")  # another origin: the model server's port
    page.wait_for_function("document.title === 'sent'")
    with playground.client() as client:
        assert client.get("/api/runs").json()["runs"] == []
    assert [r for r in server.requests if r.model] == []
    page.click("#open")  # following a link to the page itself is fine
    page.wait_for_selector("body[data-ready=true]")
    assert page.url.startswith(playground.url)

    refused = page.goto(f"http://rebind.test:{playground.port}/")  # a rebound name, same address
    assert refused is not None and refused.status == 403
    assert "Host refused" in page.content()


def hang_then(page: Any, playground: Playground, server: WatchingServer) -> None:
    server.script("p/hang", Reply(hang=True))
    ask(page, playground, panel="p/fast, p/hang")
    page.wait_for_selector(card("p/fast", state="done"))
    wait_for(lambda: server.requests_for("p/hang"))
    assert server.dropped == []


def test_stop_cancels_the_run_and_its_model_calls(
    page: Any, playground: Playground, server: WatchingServer
) -> None:
    hang_then(page, playground, server)
    page.click("#stop")
    page.wait_for_selector("#run-state[data-state=cancelled]")
    wait_for(lambda: "p/hang" in server.dropped)  # the model server saw the connection close
    assert page.get_attribute(card("p/hang"), "data-state") == "stopped"
    assert page.get_attribute(card("p/fast"), "data-state") == "done"
    assert page.locator("#stop").is_disabled() and page.locator("#ask").is_enabled()
    assert server.requests_for("judge/model") == []


def test_closing_the_tab_cancels_the_run_and_its_model_calls(
    page: Any, playground: Playground, server: WatchingServer
) -> None:
    hang_then(page, playground, server)
    page.close()
    wait_for(lambda: "p/hang" in server.dropped)
    with playground.client() as client:
        (run,) = client.get("/api/runs").json()["runs"]
    assert run["state"] == "cancelled"
    assert server.requests_for("judge/model") == []
    assert json.dumps(run).count(SECRET) == 0


def test_the_page_shows_what_the_result_carries(page: Any, playground: Playground) -> None:
    """A recorded run whose result has every additive field: meta, citations, statuses, cost."""
    usage = {"input_tokens": 11, "output_tokens": 7, "total_tokens": 18, "cost": 0.0012}
    result = {
        "status": "ok",
        "analysis": {
            "consensus": ["one claim"],
            "contradictions": [],
            "partial_coverage": [],
            "unique_insights": [],
            "blind_spots": [],
        },
        "analysis_meta": {
            "responses_compared": 1,
            "degraded": "single_response",
            "dropped_citations": [{"section": "unique_insights", "cited": "Response Z"}],
            "repaired": True,
        },
        "citations": [
            {"url": "https://example.org/a", "title": "<b>A</b> page", "models": ["p/fast"]},
            {"url": "javascript:alert(1)", "title": "not a link", "models": ["p/fast"]},
        ],
        "responses": [{"model": "p/fast", "content": "fine", "usage": usage, "latency_s": 0.2}],
        "failed_models": [
            {
                "model": "p/busy",
                "error": "slow down",
                "failure_reason": "rate_limited",
                "status_code": 429,
            }
        ],
        "judge_model": "judge/model",
        "judge_usage": usage,
        "usage": {"panel": usage, "judge": usage, "synthesis": usage, "total": usage},
    }
    settings = {"panel": ["p/fast", "p/busy"], "judge": "judge/model", "synthesize": True}
    started = {"type": "started", "id": "feed", "question": QUESTION, "created": 1.0}
    started |= settings | {"synthesizer": "judge/model"}

    async def record() -> None:
        store = RunStore(playground.db)
        await store.create("feed", 1.0, QUESTION, settings)
        events = [started, {"type": "progress", "event": "panel_started", "model": "p/fast"}]
        await store.finish(
            "feed", state="done", events=events, result=result, answer="ok", error=None
        )
        store.close()

    # Playwright's sync API holds this thread's event loop: record from another thread.
    with ThreadPoolExecutor(1) as pool:
        pool.submit(asyncio.run, record()).result()
    page.goto(playground.url + "/#run=feed")
    assert wait_finished(page) == "done"
    banners = " ".join(texts(page, "#banners .banner"))
    assert "only 1 answer was compared" in banners
    assert "Response Z (unique_insights)" in banners and "1 citation named no panelist" in banners
    assert "repaired" in banners
    links = page.locator("#citations a")
    assert links.count() == 1 and links.get_attribute("href") == "https://example.org/a"
    assert links.inner_text() == "<b>A</b> page"  # a model-written title is text too
    assert "not a link" in page.locator("#citations").inner_text()
    assert "— p/fast" in page.locator("#citations li").first.inner_text()
    busy = page.locator(card("p/busy", ".status")).inner_text()
    assert busy == "failed: rate_limited (HTTP 429): slow down"
    assert page.get_attribute(card("p/busy"), "data-state") == "failed"
    cost = page.locator('#usage-table tr[data-step="panel"] td').last.inner_text()
    assert cost == "$0.0012"


@pytest.mark.skipif(
    "analysis_meta" not in FusionResult.model_fields,
    reason="the graph does not report analysis_meta yet (the page's banners are tested above)",
)
def test_a_single_answer_is_shown_as_a_degraded_analysis(page: Any, playground: Playground) -> None:
    ask(page, playground, panel="p/fast")
    assert wait_finished(page) == "done"
    meta = result_of(page, playground)["analysis_meta"]
    assert meta["degraded"] == "single_response" and meta["responses_compared"] == 1
    banners = " ".join(texts(page, "#banners .banner"))
    assert "Degraded analysis: only 1 answer was compared" in banners
    # the scripted judge also cites "Response B", who was not on this panel
    dropped = [d["cited"] for d in meta["dropped_citations"]]
    assert dropped and all(name in banners for name in dropped)
    noun = "citation" if len(dropped) == 1 else "citations"
    assert f"{len(dropped)} {noun} named no panelist" in banners


def test_the_pages_a_panel_model_cited_are_listed_with_it(
    page: Any, playground: Playground, server: WatchingServer
) -> None:
    cited = {"url": "https://example.org/study", "title": "BRT study"}
    annotations = [{"type": "url_citation", "url_citation": cited}]
    server.script("p/fast", Reply("A tram, see the study.", annotations=annotations))
    ask(page, playground, panel="p/fast, p/mid")  # the panel streams: annotations arrive as deltas
    assert wait_finished(page) == "done"
    assert result_of(page, playground)["citations"] == [{**cited, "models": ["p/fast"]}]
    link = page.locator("#citations a")
    assert link.inner_text() == "BRT study" and link.get_attribute("href") == cited["url"]
    assert page.locator("#citations li").inner_text().endswith("— p/fast")


def test_the_cost_a_provider_reports_reaches_the_cards_and_the_usage_table(
    page: Any, playground: Playground, server: WatchingServer
) -> None:
    server.script("p/priced", Reply("The priced panelist's answer.", cost=0.0021))
    server.script("judge/model", Reply(verdict(), cost=0.003))
    try:
        ask(page, playground, panel="p/priced, p/fast")
        assert wait_finished(page) == "done"
        result = result_of(page, playground)
    finally:
        server.script("judge/model", verdict())
    priced = [r for r in result["responses"] if r["model"] == "p/priced"][0]
    assert priced["usage"]["cost"] == 0.0021 and result["usage"]["total"]["cost"] == 0.0051
    assert "$0.0021" in page.locator(card("p/priced", ".status")).inner_text()
    assert "$" not in page.locator(card("p/fast", ".status")).inner_text()  # none was reported
    row = page.locator('#usage-table tr[data-step="panel"][data-model="p/priced"] td').last
    assert row.inner_text() == "$0.0021"
    assert page.locator('#usage-table tr[data-step="total"] td').last.inner_text() == "$0.0051"


def test_tokens_a_provider_does_not_report_read_not_reported_in_the_usage_table(
    page: Any, playground: Playground, server: WatchingServer
) -> None:
    server.script("p/fast", Reply("The fast panelist's answer.", usage=False))
    server.script("synth/model", Reply("It depends.", usage=False))  # as llama.cpp streams
    try:
        ask(page, playground, panel="p/fast, p/mid")
        assert wait_finished(page) == "done"
        result = result_of(page, playground)
    finally:
        server.script("p/fast", "The fast panelist's answer.", latency_s=0.2)
        server.script("synth/model", "## Short answer\n\nIt **depends** on the revenue.")
    assert result["usage"]["unreported"] == ["panel", "synthesis"]

    def row(step: str, model: str = "") -> list[str]:
        chosen = f'[data-model="{model}"]' if model else ""
        return texts(page, f'#usage-table tr[data-step="{step}"]{chosen} td')

    assert row("panel", "p/fast")[2:5] == ["not reported"] * 3
    assert row("panel", "p/mid")[4] == f"{result['responses'][1]['usage']['total_tokens']:,}"
    assert row("synthesis")[2:5] == ["not reported"] * 3
    assert row("total")[1] == "some calls not reported"
