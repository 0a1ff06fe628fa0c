"""The playground's server: runs streamed from the graph, kept, reopened, cancelled, and guarded."""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import subprocess
import sys
import time
import tomllib
from collections.abc import Iterator
from fnmatch import fnmatch
from pathlib import Path
from typing import Any

import httpx
import pytest
from langchain_core.messages import HumanMessage

from langfusion.graph import FusionContext, ModelRegistry, build_fusion_graph
from langfusion.tools.cli import main
from langfusion.tools.playground.render import answer_html
from langfusion.tools.playground.store import INTERRUPTED, RunStore
from tests.openai_server import Reply
from tests.playground_harness import (
    PANEL,
    SECRET,
    Playground,
    WatchingServer,
    events,
    scripted_server,
    wait_for,
)

ROOT = Path(__file__).parent.parent
QUESTION = "Where do economists disagree about a carbon tax?"
ANSWER = "## Short answer\n\nIt **depends** on the revenue."


@pytest.fixture
def server() -> Iterator[WatchingServer]:
    running = scripted_server()
    try:
        yield running
    finally:
        running.stop()


@pytest.fixture
def keyed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENROUTER_API_KEY", SECRET)


def start(client: httpx.Client, **fields: Any) -> str:
    response = client.post("/api/runs", json={"question": QUESTION, **fields})
    assert response.status_code == 201, response.text
    run_id: str = response.json()["id"]
    return run_id


def panel_text(seen: list[dict[str, Any]], model: str) -> str:
    return "".join(
        e["text"]
        for e in seen
        if e["type"] == "token" and e["role"] == "panel" and e["model"] == model
    )


def test_a_run_streams_its_progress_the_panel_text_and_the_result(
    server: WatchingServer, keyed: None, tmp_path: Path
) -> None:
    with Playground(server, tmp_path / "runs.sqlite") as playground, playground.client() as client:
        run_id = start(client)
        seen = list(events(client, run_id))
        result_download = client.get(f"/api/runs/{run_id}/result.json")

    started, finished = seen[0], seen[-1]
    assert started["type"] == "started" and started["panel"] == PANEL
    assert (started["judge"], started["synthesizer"]) == ("judge/model", "synth/model")
    assert finished["type"] == "finished" and finished["state"] == "done"
    done = [e["model"] for e in seen if e.get("event") == "panel_finished"]
    assert done == ["p/fast", "p/mid", "p/slow"]  # the order the latencies dictate
    # each panel model's text arrives token by token, before it is reported done
    for model in PANEL:
        tokens = [e for e in seen if e["type"] == "token" and e["model"] == model]
        assert len(tokens) > 1
        assert seen.index(tokens[-1]) < next(
            i
            for i, e in enumerate(seen)
            if e.get("event") == "panel_finished" and e["model"] == model
        )
        answer = server.scripts[model].replies[0].content
        assert panel_text(seen, model) == answer
    assert all(r.body.get("stream") for m in PANEL for r in server.requests_for(m))
    synthesis = "".join(
        e["text"] for e in seen if e["type"] == "token" and e["role"] == "synthesis"
    )
    assert synthesis == ANSWER
    order = [e.get("event") for e in seen if e["type"] == "progress"]
    assert order.index("judge_finished") < order.index("synthesis_started")

    result = finished["result"]
    assert result["status"] == "ok" and [r["model"] for r in result["responses"]] == PANEL
    stances = {s["model"] for s in result["analysis"]["contradictions"][0]["stances"]}
    assert len(stances) == 2 and stances <= set(PANEL)  # real slugs, not the judge's labels
    assert finished["answer"] == ANSWER
    assert (
        finished["answer_html"]
        == "<h2>Short answer</h2>\n<p>It <strong>depends</strong> on the revenue.</p>\n"
    )
    assert result_download.status_code == 200
    assert "attachment" in result_download.headers["content-disposition"]
    assert result_download.json() == {**result, "answer": ANSWER}
    assert SECRET not in json.dumps(seen) and SECRET not in result_download.text


def test_the_page_and_its_config_never_carry_the_key(
    server: WatchingServer, keyed: None, tmp_path: Path
) -> None:
    with Playground(server, tmp_path / "runs.sqlite") as playground, playground.client() as client:
        texts = [client.get(path).text for path in ("/", "/api/config", "/static/app.js")]
        config = client.get("/api/config").json()
    assert config["api_key_set"] is True and config["api_key_env"] == "OPENROUTER_API_KEY"
    assert config["defaults"]["analysis_models"] == PANEL
    assert config["resolved"]["judge"] == "judge/model"
    assert set(config["presets"]) == {"quality", "budget", "local"}
    assert all(SECRET not in text and SECRET[:12] not in text for text in texts)


def test_the_page_may_change_the_models_and_bad_values_are_refused_before_any_call(
    server: WatchingServer, keyed: None, tmp_path: Path
) -> None:
    with Playground(server, tmp_path / "runs.sqlite") as playground, playground.client() as client:
        refused = [
            client.post("/api/runs", json={"question": QUESTION, "analysis_models": "p/1, p/1"}),
            client.post("/api/runs", json={"question": QUESTION, "preset": "premium"}),
            client.post("/api/runs", json={"question": "   "}),
            client.post("/api/runs", json={"question": "x" * 100_001}),
            client.post("/api/runs", json=["not", "an", "object"]),
        ]
        form = client.post("/api/runs", data={"question": QUESTION})
        assert server.requests == []
        run_id = start(client, analysis_models="p/fast", model="p/mid", synthesis_model=None)
        seen = list(events(client, run_id))
    assert [r.status_code for r in refused] == [400] * 5
    assert "analysis_models lists p/1 more than once" in refused[0].json()["error"]
    assert "preset must be one of" in refused[1].json()["error"]
    assert refused[2].json()["error"] == "the question is empty"
    assert form.status_code == 415
    assert seen[0]["panel"] == ["p/fast"]
    assert (seen[0]["judge"], seen[0]["synthesizer"]) == ("p/mid", "p/mid")  # the page unset it
    assert {r.model for r in server.requests} == {"p/fast", "p/mid"}


def test_the_page_sets_the_quorum_grace_and_fallbacks_and_shows_how_they_acted(
    server: WatchingServer, keyed: None, tmp_path: Path
) -> None:
    server.script("p/down", Reply("no such model", status=404))
    server.script("f/spare", "A spare answer.")
    with Playground(server, tmp_path / "runs.sqlite") as playground, playground.client() as client:
        refused = client.post("/api/runs", json={"question": QUESTION, "quorum_grace_s": -1})
        run_id = start(
            client,
            analysis_models="p/fast, p/down",
            min_responses=2,
            quorum_grace_s=5,
            fallback_models="f/spare",
        )
        seen = list(events(client, run_id))
        result = client.get(f"/api/runs/{run_id}/result.json").json()
    assert refused.status_code == 400 and "quorum_grace_s" in refused.json()["error"]
    assert seen[-1]["state"] == "done"
    assert [(f["model"], f.get("replaced_by")) for f in result["failed_models"]] == [
        ("p/down", "f/spare")
    ]
    assert {r["model"]: r.get("fallback_for") for r in result["responses"]} == {
        "p/fast": None,
        "f/spare": "p/down",
    }


def test_runs_are_kept_and_reopen_after_a_restart(
    server: WatchingServer, keyed: None, tmp_path: Path
) -> None:
    db = tmp_path / "runs.sqlite"
    with Playground(server, db) as playground, playground.client() as client:
        run_id = start(client)
        live = list(events(client, run_id))
    calls = len(server.requests)
    with Playground(server, db) as playground, playground.client() as client:
        listed = client.get("/api/runs").json()["runs"]
        replayed = list(events(client, run_id))
        record = client.get(f"/api/runs/{run_id}").json()
        missing = client.get("/api/runs/0123abcd/events")
    assert [(r["id"], r["state"], r["status"]) for r in listed] == [(run_id, "done", "ok")]
    assert replayed[-1] == live[-1]  # the same result, answer and rendering
    assert replayed[0] == live[0]
    for model in PANEL:
        assert panel_text(replayed, model) == panel_text(live, model)
    not_tokens = [[e for e in seen if e["type"] != "token"] for seen in (live, replayed)]
    assert not_tokens[0] == not_tokens[1]
    assert record["state"] == "done" and record["question"] == QUESTION
    assert record["answer_html"] == live[-1]["answer_html"] and "<h2>" in record["answer_html"]
    assert missing.status_code == 404
    assert len(server.requests) == calls  # reopening calls no model


def test_a_foreign_host_or_origin_is_refused(
    server: WatchingServer, keyed: None, tmp_path: Path
) -> None:
    with Playground(server, tmp_path / "runs.sqlite") as playground, playground.client() as client:
        port = playground.port
        foreign_host = [
            client.get("/", headers={"host": f"rebind.example:{port}"}),
            client.get("/api/config", headers={"host": f"rebind.example:{port}"}),
            client.get("/", headers={"host": "127.0.0.1:1"}),
        ]
        body = {"question": QUESTION}
        foreign_origin = [
            client.post("/api/runs", json=body, headers={"origin": "http://evil.example"}),
            client.post("/api/runs", json=body, headers={"origin": f"http://evil.example:{port}"}),
            client.post("/api/runs", json=body, headers={"origin": "null"}),
            client.post("/api/runs", json=body, headers={"sec-fetch-site": "cross-site"}),
            client.get("/api/runs", headers={"origin": "http://evil.example"}),
        ]
        assert server.requests == [] and client.get("/api/runs").json()["runs"] == []
        own = client.post(
            "/api/runs",
            json=body,
            headers={"origin": f"http://127.0.0.1:{port}", "sec-fetch-site": "same-origin"},
        )
        by_name = client.get("/", headers={"host": f"localhost:{port}"})
    assert [r.status_code for r in foreign_host] == [403, 403, 403]
    assert "Host refused" in foreign_host[0].text
    assert [r.status_code for r in foreign_origin] == [403] * 5
    assert own.status_code == 201 and by_name.status_code == 200
    assert "script-src 'self'" in by_name.headers["content-security-policy"]


def hanging_run(
    server: WatchingServer, client: httpx.Client, follower: httpx.Client | None = None
) -> tuple[str, Iterator[Any]]:
    server.script("p/hang", Reply(hang=True))
    run_id = start(client, analysis_models=["p/fast", "p/hang"])
    stream = events(follower or client, run_id)
    for event in stream:
        if event.get("event") == "panel_finished":  # p/fast answered; p/hang is in flight
            break
    wait_for(lambda: server.requests_for("p/hang"))
    return run_id, stream


def test_stop_cancels_the_run_and_closes_its_model_connections(
    server: WatchingServer, keyed: None, tmp_path: Path
) -> None:
    with Playground(server, tmp_path / "runs.sqlite") as playground, playground.client() as client:
        run_id, stream = hanging_run(server, client)
        assert server.dropped == []
        stopped = client.post(f"/api/runs/{run_id}/cancel")
        rest = list(stream)
        wait_for(lambda: "p/hang" in server.dropped)  # the model server saw the connection close
        again = client.post(f"/api/runs/{run_id}/cancel")
        record = client.get(f"/api/runs/{run_id}").json()
    assert stopped.status_code == 202 and again.status_code == 409
    assert rest[-1]["type"] == "finished" and rest[-1]["state"] == "cancelled"
    assert record["state"] == "cancelled" and record["result"] is None
    assert server.requests_for("judge/model") == []


def test_closing_the_page_cancels_the_run_and_its_model_calls(
    server: WatchingServer, keyed: None, tmp_path: Path
) -> None:
    with Playground(server, tmp_path / "runs.sqlite") as playground, playground.client() as client:
        run_id, stream = hanging_run(server, client)
        stream.close()  # the page's event stream goes away
        wait_for(lambda: "p/hang" in server.dropped)
        wait_for(lambda: client.get(f"/api/runs/{run_id}").json()["state"] == "cancelled")
    assert server.requests_for("judge/model") == []


def test_a_run_refused_by_the_graph_shows_its_typed_reason(
    server: WatchingServer, tmp_path: Path
) -> None:
    with Playground(server, tmp_path / "runs.sqlite") as playground, playground.client() as client:
        assert client.get("/api/config").json()["api_key_set"] is False
        finished = list(events(client, start(client)))[-1]
    assert finished["state"] == "done"
    assert finished["result"]["status"] == "error"
    assert finished["result"]["failure_reason"] == "missing_api_key"
    assert "OPENROUTER_API_KEY" in finished["result"]["error"]
    assert server.requests == []


async def test_panel_tokens_reach_the_messages_stream_only_when_asked(
    server: WatchingServer, keyed: None
) -> None:
    graph = build_fusion_graph(model_factory=ModelRegistry(base_url=server.base_url), web_tools=[])
    ctx = FusionContext(
        analysis_models=["p/fast"], model="judge/model", synthesis_model="synth/model"
    )

    async def nodes_streamed(ctx: FusionContext) -> set[str]:
        seen = set()
        async for chunk, metadata in graph.astream(
            {"messages": [HumanMessage(QUESTION)]}, context=ctx, stream_mode="messages"
        ):
            if chunk.text:
                seen.add(metadata["langgraph_node"])
        return seen

    assert await nodes_streamed(ctx) == {"synthesize"}
    streaming = dataclasses.replace(ctx, stream_panel_tokens=True)
    assert await nodes_streamed(streaming) == {"analyze", "synthesize"}
    first, second = server.requests_for("p/fast")
    assert not first.body.get("stream") and second.body["stream"] is True


def test_the_answer_is_rendered_with_every_tag_escaped() -> None:
    html = answer_html(
        "# Title\n\n<script>alert(1)</script> <img src=x onerror=alert(2)>\n\n"
        "[click](javascript:alert(3)) [docs](https://example.org/a) ![pixel](https://example.org/p.png)"
    )
    assert "<script" not in html and "<img" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "&lt;img src=x onerror=alert(2)&gt;" in html
    assert (
        '<a href="https://example.org/a" rel="noopener noreferrer nofollow" target="_blank">'
        in html
    )
    assert 'href="javascript' not in html
    assert "<h1>Title</h1>" in html


async def test_a_run_whose_server_process_died_reads_as_interrupted(tmp_path: Path) -> None:
    db = tmp_path / "runs.sqlite"
    started = {"type": "started", "id": "abc", "question": "q"}
    # A server process that recorded a run and its first event, then died without finishing it.
    code = (
        "import asyncio, json, sys\n"
        "from langfusion.tools.playground.store import RunStore\n"
        "store = RunStore(sys.argv[1])\n"
        "journal = [(1, json.dumps(json.loads(sys.argv[2])))]\n"
        "asyncio.run(store.create('abc', 1.0, 'q', {'panel': ['p/1']}, journal=journal))\n"
    )
    subprocess.run([sys.executable, "-c", code, str(db), json.dumps(started)], check=True)
    reopened = RunStore(db)
    record = await reopened.get("abc")
    listed = await reopened.recent()
    reopened.close()
    assert record is not None and record["state"] == "interrupted"
    assert record["error"] == INTERRUPTED and record["events"] == [started]
    assert [run["state"] for run in listed] == ["interrupted"]


def test_every_static_file_is_package_data() -> None:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    assert "langfusion.tools.playground" in config["packages"]
    patterns = config["package-data"]["langfusion.tools.playground"]
    static = ROOT / "tools" / "playground" / "static"
    files = [p.relative_to(static.parent).as_posix() for p in static.rglob("*") if p.is_file()]
    assert {"static/index.html", "static/app.js", "static/style.css"} <= set(files)
    assert [f for f in files if not any(fnmatch(f, pattern) for pattern in patterns)] == []


def test_serve_refuses_bad_options_before_listening(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["serve", "--max-tool-calls", "99"]) == 2
    assert "--max-tool-calls must be from 1 to 16; got 99." in capsys.readouterr().err
    assert main(["serve", "--port", "70000"]) == 2
    assert "--port must be from 0 to 65535" in capsys.readouterr().err
    assert main(["serve", "--preset", "premium"]) == 2


@pytest.mark.slow  # the console script in a process of its own
def test_langfusion_serve_serves_the_page_with_its_options_as_defaults(
    server: WatchingServer, tmp_path: Path
) -> None:
    script = Path(sys.executable).parent / "langfusion"
    env = {k: v for k, v in os.environ.items() if not k.startswith("OPENROUTER")}
    env |= {"OPENROUTER_API_KEY": SECRET, "OPENROUTER_BASE_URL": server.base_url}
    argv = [str(script), "serve", "--port", "0", "--db", str(tmp_path / "runs.sqlite")]
    argv += ["--models", "p/fast,p/mid", "--judge", "judge/model", "--no-web"]
    argv += ["--synthesis-model", "synth/model", "--timeout", "30", "--quorum-grace", "7"]
    process = subprocess.Popen(
        argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        assert line.startswith("langfusion playground: http://127.0.0.1:"), line
        url = line.split()[2].rstrip("/")
        with httpx.Client(base_url=url, trust_env=False, timeout=30) as client:
            config = client.get("/api/config").json()
            run_id = start(client)
            seen = list(events(client, run_id))
            page = client.get("/").text
    finally:
        process.send_signal(signal.SIGINT)  # Ctrl-C: runs stop, the server exits
        _, err = process.communicate(timeout=30)
    assert config["defaults"] == {
        "preset": None,
        "analysis_models": ["p/fast", "p/mid"],
        "model": "judge/model",
        "synthesis_model": "synth/model",
        "web_tools": False,
        "min_responses": None,
        "quorum_grace_s": 7.0,
        "fallback_models": None,
    }
    assert seen[0]["given"]["timeout_s"] == 30
    assert seen[-1]["state"] == "done" and seen[-1]["answer"] == ANSWER
    assert {r.model for r in server.requests} == {"p/fast", "p/mid", "judge/model", "synth/model"}
    assert 'id="ask-form"' in page
    assert process.returncode == 130, err
    assert SECRET not in json.dumps(seen) + json.dumps(config) + err


@pytest.mark.local_model
def test_serve_runs_the_embedded_model_out_of_the_box(tmp_path: Path) -> None:
    from tests.test_local_e2e import llama_servers

    env = {k: v for k, v in os.environ.items() if not k.endswith("_API_KEY")}
    argv = [sys.executable, "-m", "langfusion.tools.cli", "serve", "--port", "0"]
    argv += ["--db", str(tmp_path / "runs.sqlite")]
    process = subprocess.Popen(
        argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env
    )
    try:
        assert process.stdout is not None
        url = process.stdout.readline().split()[2].rstrip("/")
        with httpx.Client(base_url=url, trust_env=False, timeout=600) as client:
            config = client.get("/api/config").json()
            seen = list(events(client, start(client)))
        ours = {pid for pid in llama_servers() if _parent(pid) == process.pid}
    finally:
        process.send_signal(signal.SIGINT)
        _, err = process.communicate(timeout=60)
    assert config["api_key_set"] is False and config["resolved"]["preset"] == "local"
    finished = seen[-1]
    assert finished["state"] == "done", finished
    result = finished["result"]
    assert result["status"] == "ok" and result["analysis"] is not None, result
    assert finished["answer"].strip()
    for model in config["resolved"]["panel"]:  # the embedded model's answers stream in
        assert len([e for e in seen if e["type"] == "token" and e["model"] == model]) > 1
    assert "local" in err  # the notice that this is the small embedded model
    assert ours, "the embedded server ran as the playground's child"
    deadline = time.monotonic() + 10
    while ours & llama_servers() and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not ours & llama_servers(), "the llama.cpp server outlived the playground"


def _parent(pid: int) -> int:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return 0
    return int(stat.rpartition(")")[2].split()[1])


def test_a_run_followed_by_two_pages_goes_on_when_one_leaves(
    server: WatchingServer, keyed: None, tmp_path: Path
) -> None:
    with (
        Playground(server, tmp_path / "runs.sqlite") as playground,
        playground.client() as first,
        playground.client() as second,
    ):
        run_id = start(first)
        leaving = events(first, run_id)
        for event in leaving:
            if event.get("event") == "panel_finished":  # p/fast answered
                break
        joined = events(second, run_id)  # joins mid-run: the story so far, then live
        staying = [next(joined)]
        leaving.close()  # one page goes away while p/mid and p/slow still answer
        staying += list(joined)
    assert staying[0]["type"] == "started" and staying[-1]["state"] == "done"
    assert [e["model"] for e in staying if e.get("event") == "panel_finished"] == [
        "p/fast",
        "p/mid",
        "p/slow",
    ]
    assert panel_text(staying, "p/fast") == "The fast panelist's answer."
    assert server.dropped == []


def test_a_run_is_followed_and_stopped_from_another_server_on_the_same_file(
    server: WatchingServer, keyed: None, tmp_path: Path
) -> None:
    db = tmp_path / "runs.sqlite"
    with (
        Playground(server, db) as driving,
        Playground(server, db) as other,  # knows the run only from the file
        driving.client() as here,
        other.client() as there,
    ):
        server.script("p/hang", Reply(hang=True))
        run_id = start(here, analysis_models=["p/fast", "p/hang"])
        stream = events(there, run_id)
        seen = []
        for event in stream:
            seen.append(event)
            if event.get("event") == "panel_finished":  # p/fast answered; p/hang is in flight
                break
        wait_for(lambda: server.requests_for("p/hang"))
        stopped = there.post(f"/api/runs/{run_id}/cancel")
        wait_for(lambda: "p/hang" in server.dropped)  # the driving server closed the connection
        seen += list(stream)
        again = there.post(f"/api/runs/{run_id}/cancel")
        record = there.get(f"/api/runs/{run_id}").json()
        replayed = list(events(there, run_id))
    assert stopped.status_code == 202 and again.status_code == 409
    assert seen[0]["type"] == "started" and seen[0]["panel"] == ["p/fast", "p/hang"]
    assert panel_text(seen, "p/fast") == "The fast panelist's answer."
    assert seen[-1]["type"] == "finished" and seen[-1]["state"] == "cancelled"
    assert record["state"] == "cancelled" and server.requests_for("judge/model") == []
    assert replayed[-1] == seen[-1] and panel_text(replayed, "p/fast") == panel_text(seen, "p/fast")


def test_a_run_goes_on_while_a_page_on_another_server_follows_it(
    server: WatchingServer, keyed: None, tmp_path: Path
) -> None:
    db = tmp_path / "runs.sqlite"
    with (
        Playground(server, db) as driving,
        Playground(server, db) as other,
        driving.client() as here,
        other.client() as there,
    ):
        run_id = start(here)
        leaving = events(here, run_id)
        for event in leaving:
            if event.get("event") == "panel_finished":  # p/fast answered
                break
        staying = events(there, run_id)
        seen = [next(staying)]
        leaving.close()  # the page on the driving server goes while p/mid and p/slow answer
        seen += list(staying)
    assert seen[0]["type"] == "started" and seen[-1]["state"] == "done"
    done = [e["model"] for e in seen if e.get("event") == "panel_finished"]
    assert done == ["p/fast", "p/mid", "p/slow"]
    assert panel_text(seen, "p/slow") == "The slow panelist's answer."
    assert server.dropped == []


def test_closing_the_last_page_on_another_server_cancels_the_run(
    server: WatchingServer, keyed: None, tmp_path: Path
) -> None:
    db = tmp_path / "runs.sqlite"
    with (
        Playground(server, db) as driving,
        Playground(server, db) as other,
        driving.client() as here,
        other.client() as there,
    ):
        run_id, stream = hanging_run(server, here, there)  # started here, followed there
        assert there.get(f"/api/runs/{run_id}").json()["state"] == "running"
        stream.close()
        wait_for(lambda: "p/hang" in server.dropped)
        wait_for(lambda: there.get(f"/api/runs/{run_id}").json()["state"] == "cancelled")
    assert server.requests_for("judge/model") == []
