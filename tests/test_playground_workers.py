"""The playground under ``langfusion serve --workers 2``: a run started in one worker process
is followed, stopped, and told interrupted from pages that the other worker serves.

Each response names the worker that answered it (``x-langfusion-worker``); a
client keeps its connection, so once a request shows which worker holds it,
its later requests go to the same worker.
"""

from __future__ import annotations

import json
import os
import signal
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from typing import Any

import httpx
import pytest

from langfusion.tools.playground.serve import WORKER_HEADER
from langfusion.tools.playground.store import INTERRUPTED
from tests.api_harness import WatchingServer, serve_process, upstream
from tests.openai_server import Reply
from tests.playground_harness import wait_for

pytestmark = pytest.mark.slow  # two server processes of their own

QUESTION = "Where do economists disagree about a carbon tax?"


@pytest.fixture
def server() -> Iterator[WatchingServer]:
    scripted = upstream()
    scripted.script("p/two", Reply(hang=True))  # the run stays in flight until it is stopped
    yield scripted
    scripted.stop()


@pytest.fixture
def playground(server: WatchingServer) -> Iterator[str]:
    with serve_process(server, "--workers", "2") as (api_base, _, _):
        yield api_base.removesuffix("/api/v1")


def worker(response: httpx.Response) -> int:
    return int(response.headers[WORKER_HEADER])


@contextmanager
def clients_of_another_worker(url: str, than: int, count: int) -> Iterator[list[httpx.Client]]:
    """``count`` clients whose connection is held by a worker other than ``than``."""
    with ExitStack() as stack:
        found: list[httpx.Client] = []
        for _ in range(64):
            client = stack.enter_context(httpx.Client(base_url=url, trust_env=False, timeout=30))
            if worker(client.get("/api/config")) != than:
                found.append(client)
                if len(found) == count:
                    yield found
                    return
        raise AssertionError(f"no connection reached a worker other than {than}")


def start_in_flight(url: str, server: WatchingServer) -> tuple[str, int]:
    """Start a run from a fresh connection: its id and the worker that drives it."""
    with httpx.Client(base_url=url, trust_env=False, timeout=30) as client:
        response = client.post("/api/runs", json={"question": QUESTION})
    assert response.status_code == 201, response.text
    wait_for(lambda: server.requests_for("p/two"))  # p/two holds its connection open
    return response.json()["id"], worker(response)


def data(lines: Iterator[str]) -> Iterator[dict[str, Any]]:
    """The events of an SSE stream's lines, as the page reads them."""
    for line in lines:
        if line.startswith("data: "):
            yield json.loads(line.removeprefix("data: "))


def test_a_run_is_followed_and_stopped_from_another_worker(
    playground: str, server: WatchingServer
) -> None:
    run_id, driver = start_in_flight(playground, server)
    with clients_of_another_worker(playground, driver, 2) as (following, stopping):
        with following.stream("GET", f"/api/runs/{run_id}/events") as response:
            follower = worker(response)
            stream = data(response.iter_lines())
            seen = []
            for event in stream:
                seen.append(event)
                if event.get("event") == "panel_finished":  # p/one answered; p/two hangs
                    break
            assert not server.closed("p/two")
            stopped = stopping.post(f"/api/runs/{run_id}/cancel")
            wait_for(lambda: server.closed("p/two"))  # the driving worker closed the model call
            seen += list(stream)
        record = stopping.get(f"/api/runs/{run_id}")
    assert follower != driver and worker(stopped) != driver
    assert stopped.status_code == 202
    assert seen[0]["type"] == "started" and seen[0]["panel"] == ["p/one", "p/two"]
    panel_text = "".join(e["text"] for e in seen if e["type"] == "token" and e["model"] == "p/one")
    assert panel_text == server.scripts["p/one"].replies[0].content
    assert seen[-1]["type"] == "finished" and seen[-1]["state"] == "cancelled"
    assert record.json()["state"] == "cancelled"
    assert server.requests_for("judge/model") == []


def test_a_run_whose_worker_dies_ends_interrupted_for_a_page_on_another(
    playground: str, server: WatchingServer
) -> None:
    run_id, driver = start_in_flight(playground, server)
    with clients_of_another_worker(playground, driver, 1) as (following,):
        with following.stream("GET", f"/api/runs/{run_id}/events") as response:
            follower = worker(response)
            stream = data(response.iter_lines())
            for event in stream:
                if event.get("event") == "panel_finished":
                    break
            os.kill(driver, signal.SIGKILL)  # a worker of the server this test started
            rest = list(stream)
        record = following.get(f"/api/runs/{run_id}")
        listed = following.get("/api/runs")
    assert follower != driver and worker(record) == follower
    assert rest[-1]["type"] == "finished" and rest[-1]["state"] == "interrupted"
    assert rest[-1]["error"] == INTERRUPTED
    assert record.json()["state"] == "interrupted"
    assert record.json()["events"][0]["type"] == "started"  # what it did before, kept
    assert [run["state"] for run in listed.json()["runs"]] == ["interrupted"]
