"""The playground's ASGI application: the page, its JSON API and the runs' event streams.

=====================================  ==========================================
``GET /``                              the page
``GET /api/config``                    the page's defaults and the presets (never a key)
``GET /api/runs``                      earlier runs, newest first
``POST /api/runs``                     start a run: ``{"question", "preset", "analysis_models",
                                       "model", "synthesis_model", "web_tools"}``
``POST /api/estimate``                 the same body's worst-case cost, no model called
``GET /api/runs/{id}/events``          the run as server-sent events, from its start
``POST /api/runs/{id}/cancel``         stop it, and its model calls (in whichever process runs it)
``GET /api/runs/{id}``                 the run as recorded
``GET /api/runs/{id}/result.json``     the SPEC result (with ``"answer"``), to download
``/api/v1/...``, ``/v1/...``           the OpenRouter-compatible API (``api_tokens``)
=====================================  ==========================================
"""

from __future__ import annotations

import json
import os
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response, StreamingResponse
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from langfusion.graph.context import API_KEY_ENV, PRESET_ALIASES, PRESETS, FusionContext
from langfusion.graph.cost import aestimate_cost, budget_refusal
from langfusion.tools.api import KEEPALIVE_S, BearerTokens, api_routes
from langfusion.tools.playground.guard import HostOriginGuard, allowed_hostnames
from langfusion.tools.playground.render import answer_html
from langfusion.tools.playground.runs import RunManager
from langfusion.tools.playground.store import RunStore

if TYPE_CHECKING:
    from langfusion.graph import FusionGraph, ModelFactory

__all__ = ["MAX_QUESTION_CHARS", "PAGE_FIELDS", "create_app", "default_db_path"]

STATIC = Path(__file__).parent / "static"
MAX_QUESTION_CHARS = 100_000
# The parameters the page can change; the rest stay at the server's defaults.
PAGE_FIELDS = (
    "preset",
    "analysis_models",
    "model",
    "synthesis_model",
    "web_tools",
    "min_responses",
    "quorum_grace_s",
    "fallback_models",
)
# Page fields that are comma-separated slugs in the form.
_LISTED = ("analysis_models", "fallback_models")


def default_db_path() -> Path:
    """Where runs are kept: ``$XDG_STATE_HOME/langfusion/playground.sqlite``."""
    state = os.environ.get("XDG_STATE_HOME") or Path.home() / ".local" / "state"
    return Path(state) / "langfusion" / "playground.sqlite"


def _default_graph() -> FusionGraph:
    from langfusion.graph import build_fusion_graph
    from langfusion.tools.web import web_tools

    return build_fusion_graph(web_tools=web_tools)


def create_app(
    *,
    build_graph: Callable[[], FusionGraph] | None = None,
    defaults: Mapping[str, Any] | None = None,
    db: str | Path | None = None,
    host: str = "127.0.0.1",
    api_tokens: BearerTokens | None = None,
    model_factory: ModelFactory | None = None,
    api_keepalive_s: float = KEEPALIVE_S,
) -> Starlette:
    """Build the playground application.

    Args:
        build_graph: Builds the fusion graph the runs stream; defaults to
            ``build_fusion_graph(web_tools=web_tools)`` on the default model registry.
        defaults: ``FusionContext`` parameters every run starts from (the
            ``langfusion serve`` options); the page may change the models,
            the preset and the web tools.
        db: The SQLite file runs are kept in (default: ``default_db_path()``).
        host: The address the server is bound to: requests must name it (or,
            for a loopback address, ``localhost``/``127.0.0.1``/``[::1]``) as
            their ``Host``.
        api_tokens: Serve the OpenRouter-compatible API under ``/api/v1`` and
            ``/v1`` to requests bearing one of these tokens; ``None``: no API.
        model_factory: Builds the API's models and prices the page's cost
            estimates (default: the model registry).
        api_keepalive_s: Seconds of silence after which an API stream sends a keep-alive.

    Returns:
        The ASGI application, wrapped in its Host and Origin guard.

    Raises:
        ValueError: ``defaults`` that are not valid run parameters.
    """
    base = dict(defaults or {})
    FusionContext.from_parameters(base, owner="the playground")  # refuse bad defaults now
    store = RunStore(db if db is not None else default_db_path())
    manager = RunManager(build_graph or _default_graph, store)

    async def page(request: Request) -> Response:
        return FileResponse(STATIC / "index.html", headers={"cache-control": "no-store"})

    async def config(request: Request) -> Response:
        ctx = FusionContext(**base)
        return JSONResponse(
            {
                "defaults": {name: base.get(name) for name in PAGE_FIELDS}
                | {"web_tools": ctx.web_tools},
                "resolved": {
                    "preset": ctx.preset_used,
                    "panel": list(ctx.panel),
                    "judge": ctx.judge,
                    "synthesizer": ctx.synthesizer,
                },
                # OpenRouter's names for the same presets are not shown twice.
                "presets": {
                    name: {"panel": list(p.panel), "judge": p.judge}
                    for name, p in PRESETS.items()
                    if name not in PRESET_ALIASES
                },
                "api_key_env": API_KEY_ENV,
                "api_key_set": bool(os.environ.get(API_KEY_ENV)),
            }
        )

    async def list_runs(request: Request) -> Response:
        return JSONResponse({"runs": await store.recent()})

    async def asked(request: Request) -> tuple[str, FusionContext] | Response:
        """The question and the run parameters a page's request sends, or why they are refused."""
        if request.headers.get("content-type", "").split(";")[0].strip() != "application/json":
            return _error(415, "send the run as application/json")
        try:
            body = json.loads(await request.body())
        except ValueError:
            return _error(400, "the body is not JSON")
        if not isinstance(body, dict):
            return _error(400, "the body must be a JSON object")
        question = body.get("question")
        if not isinstance(question, str) or not question.strip():
            return _error(400, "the question is empty")
        if len(question) > MAX_QUESTION_CHARS:
            return _error(400, f"the question is longer than {MAX_QUESTION_CHARS:,} characters")
        try:
            ctx = FusionContext.from_parameters(_settings(base, body), owner="the playground")
        except ValueError as exc:
            return _error(400, str(exc))
        return question.strip(), ctx

    async def start_run(request: Request) -> Response:
        read = await asked(request)
        if isinstance(read, Response):
            return read
        run = await manager.start(*read)
        return JSONResponse({"id": run.id}, status_code=201)

    async def estimate(request: Request) -> Response:
        read = await asked(request)
        if isinstance(read, Response):
            return read
        question, ctx = read
        projection = await aestimate_cost(question, ctx, model_factory=model_factory)
        budget = ctx.max_cost_usd
        refused = None if budget is None else budget_refusal(projection, budget)
        return JSONResponse(
            {
                "projection": projection.model_dump(mode="json"),
                "max_cost_usd": budget,
                "refused": refused.error if refused is not None else None,
            }
        )

    async def events(request: Request) -> Response:
        run_id = request.path_params["run_id"]
        if run_id not in manager.runs and await store.get(run_id) is None:
            return _error(404, "no such run")

        async def stream() -> AsyncIterator[str]:
            async for event in manager.follow(run_id):
                if event is None:
                    yield ": heartbeat\n\n"
                else:
                    yield f"data: {json.dumps(event, ensure_ascii=False)}\n\n"

        return StreamingResponse(
            stream(),
            media_type="text/event-stream",
            headers={"cache-control": "no-store", "x-accel-buffering": "no"},
        )

    async def cancel(request: Request) -> Response:
        if not await manager.cancel(request.path_params["run_id"]):
            return _error(409, "the run is not running")
        return JSONResponse({"cancelled": True}, status_code=202)

    async def get_run(request: Request) -> Response:
        record = await store.get(request.path_params["run_id"])
        if record is None:
            return _error(404, "no such run")
        record["answer_html"] = answer_html(record["answer"]) if record["answer"] else ""
        return JSONResponse(record, headers={"cache-control": "no-store"})

    async def result_json(request: Request) -> Response:
        run_id = request.path_params["run_id"]
        record = await store.get(run_id)
        if record is None or record["result"] is None:
            return _error(404, "no result for this run")
        content = {**record["result"], "answer": record["answer"]}
        return Response(
            json.dumps(content, ensure_ascii=False, indent=2),
            media_type="application/json",
            headers={"content-disposition": f'attachment; filename="fusion-{run_id}.json"'},
        )

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        try:
            yield
        finally:
            await manager.close()
            store.close()

    api = (
        api_routes(
            tokens=api_tokens,
            model_factory=model_factory,
            defaults=base,
            keepalive_s=api_keepalive_s,
        )
        if api_tokens is not None
        else []
    )
    app = Starlette(
        routes=[
            *api,
            Route("/", page),
            Route("/api/config", config),
            Route("/api/runs", list_runs, methods=["GET"]),
            Route("/api/runs", start_run, methods=["POST"]),
            Route("/api/estimate", estimate, methods=["POST"]),
            Route("/api/runs/{run_id:str}", get_run),
            Route("/api/runs/{run_id:str}/events", events),
            Route("/api/runs/{run_id:str}/cancel", cancel, methods=["POST"]),
            Route("/api/runs/{run_id:str}/result.json", result_json),
            Mount("/static", StaticFiles(directory=STATIC)),
        ],
        lifespan=lifespan,
    )
    app.add_middleware(HostOriginGuard, hostnames=allowed_hostnames(host))
    app.state.manager = manager
    return app


def _settings(base: Mapping[str, Any], body: Mapping[str, Any]) -> dict[str, Any]:
    """The server's defaults, with the fields the page sent in their place (empty: unset)."""
    settings = dict(base)
    for name in PAGE_FIELDS:
        if name not in body:
            continue
        value = body[name]
        if name in _LISTED and isinstance(value, str):
            value = [slug.strip() for slug in value.split(",") if slug.strip()]
        if value is None or value == "" or value == []:
            settings.pop(name, None)
        else:
            settings[name] = value
    return settings


def _error(status: int, message: str) -> Response:
    return JSONResponse({"error": message}, status_code=status)
