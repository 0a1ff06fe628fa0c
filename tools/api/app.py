"""The API's routes: ``/api/v1`` (OpenRouter's base URL) and ``/v1`` (OpenAI-style).

==========================================  =========================================
``POST {base}/chat/completions``            Chat Completions, whole or streamed
``POST {base}/responses``                   the Responses API, whole or streamed
``GET {base}/models``                       the fusion alias and the default models
==========================================  =========================================

A request with ``"estimate": true`` gets the fusion's worst-case cost
projection (``CostProjection``) as JSON instead of a run.

Every request needs ``Authorization: Bearer <token>``. Nothing is kept between
requests: a conversation's fusion record travels in the conversation.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from langfusion.graph import (
    CostProjection,
    FusionContext,
    FusionGraph,
    ModelFactory,
    aestimate_cost,
    build_fusion_graph,
)
from langfusion.tools.api.auth import BearerTokens
from langfusion.tools.api.chat import completion, completion_frames
from langfusion.tools.api.errors import ApiError, unexpected
from langfusion.tools.api.events import Finished, Outcome
from langfusion.tools.api.loop import Runner
from langfusion.tools.api.request import (
    FUSION_ALIASES,
    Plan,
    chat_turn,
    request_depth,
    responses_turn,
)
from langfusion.tools.api.responses import ResponseShape, response_frames
from langfusion.tools.api.stream import sse_response, until_disconnect

__all__ = ["BASES", "KEEPALIVE_S", "api_routes"]

BASES = ("/api/v1", "/v1")
# Seconds of silence after which a stream sends a keep-alive comment.
KEEPALIVE_S = 5.0
MAX_BODY_BYTES = 32 * 1024 * 1024

Handler = Callable[[Request], Awaitable[Response]]


def _error(exc: ApiError) -> Response:
    return JSONResponse(exc.body(), status_code=exc.status)


async def _outcome(events: Any) -> Outcome:
    async for event in events:
        if isinstance(event, Finished):
            return event.outcome
    raise RuntimeError("the run ended without an outcome")


def _model_entry(slug: str, description: str) -> dict[str, Any]:
    """A model as OpenRouter lists it; what is not known here is said to be unknown."""
    return {
        "id": slug,
        "canonical_slug": slug,
        "name": slug,
        "created": 0,
        "description": description,
        "context_length": None,
        "architecture": {
            "input_modalities": ["text"],
            "output_modalities": ["text"],
            "modality": "text->text",
            "tokenizer": "Router" if slug in FUSION_ALIASES else "Other",
        },
        # OpenRouter's own way of saying "priced per underlying call".
        "pricing": {"prompt": "-1", "completion": "-1"},
        "top_provider": {"is_moderated": False, "context_length": None},
        "per_request_limits": None,
        "supported_parameters": ["tools", "tool_choice", "temperature", "max_tokens", "stop"],
        "default_parameters": None,
        "supported_voices": None,
        "links": {"details": f"{BASES[0]}/models/{slug}/endpoints"},
    }


async def projected(plan: Plan, factory: ModelFactory) -> CostProjection:
    """The worst case of a request's fusion, with the model that writes its answer.

    The alias's synthesis model writes the answer; with the server tool or the
    plugin it is the request's own model, after the fusion's result comes back.

    Raises:
        ApiError: 400 when the request runs no fusion.
    """
    if plan.context is None or plan.turn.fusion is None:
        raise ApiError(
            400,
            "estimate: this request runs no fusion; the cost projection is of a fusion "
            "(model openrouter/fusion, the fusion plugin or the openrouter:fusion tool).",
        )
    settings = {**plan.context.settings(), "synthesize": True}
    if not plan.turn.fusion.alias:
        settings["synthesis_model"] = plan.turn.model
    return await aestimate_cost(
        plan.turn.messages,
        FusionContext.from_parameters(settings, owner="fusion"),
        model_factory=factory,
        synthesis_max_tokens=plan.turn.settings.get("max_tokens"),
    )


def api_routes(
    *,
    tokens: BearerTokens,
    model_factory: ModelFactory | None = None,
    defaults: Mapping[str, Any] | None = None,
    keepalive_s: float = KEEPALIVE_S,
    build_graph: Callable[[ModelFactory], FusionGraph] | None = None,
) -> list[BaseRoute]:
    """The API's routes, under ``/api/v1`` and ``/v1``.

    Args:
        tokens: The bearer tokens that open the API.
        model_factory: Builds every model, the calling model and the
            pipeline's (default: the model registry).
        defaults: ``FusionContext`` parameters every fusion starts from; a
            request's own fields override them.
        keepalive_s: Seconds of silence after which a stream sends a keep-alive.
        build_graph: Builds the pipeline on the factory (default:
            ``build_fusion_graph`` with the default web tools).

    Returns:
        Starlette routes, ready to mount beside the playground's.

    Raises:
        ValueError: ``defaults`` that are not valid run parameters.
    """
    base = dict(defaults or {})
    FusionContext.from_parameters(base, owner="the API")  # refuse bad defaults at start

    @functools.cache
    def runner() -> Runner:
        from langfusion.graph.models import default_registry

        factory = model_factory or default_registry
        if build_graph is not None:
            graph = build_graph(factory)
        else:
            from langfusion.tools.web import web_tools

            graph = build_fusion_graph(model_factory=factory, web_tools=web_tools)
        return Runner(factory, graph, base)

    def guarded(handler: Callable[[Request, dict[str, Any]], Awaitable[Response]]) -> Handler:
        async def endpoint(request: Request) -> Response:
            if not tokens.allows(request.headers.get("authorization")):
                return _error(
                    ApiError(401, "missing or wrong API token: send Authorization: Bearer <token>")
                )
            try:
                body: dict[str, Any] = {}
                if request.method == "POST":
                    raw = await request.body()
                    if len(raw) > MAX_BODY_BYTES:
                        raise ApiError(413, "the request body is too large")
                    try:
                        body = json.loads(raw)
                    except ValueError:
                        raise ApiError(400, "the body is not JSON") from None
                    if not isinstance(body, dict):
                        raise ApiError(400, "the body must be a JSON object")
                return await handler(request, body)
            except ApiError as exc:
                return _error(exc)
            except Exception as exc:  # the server's edge: a failure nobody foresaw
                return _error(unexpected(exc))

        return endpoint

    async def chat(request: Request, body: dict[str, Any]) -> Response:
        turn = chat_turn(body, request_depth(request.headers))
        plan = runner().plan(turn)
        if turn.estimate:
            return JSONResponse((await projected(plan, runner().factory)).model_dump(mode="json"))
        events = runner().run(plan)
        if turn.stream:
            return sse_response(completion_frames(events, plan.answering, keepalive_s))
        outcome = await until_disconnect(request, lambda: _outcome(events))
        return JSONResponse(completion(outcome))

    async def responses(request: Request, body: dict[str, Any]) -> Response:
        turn = responses_turn(body, request_depth(request.headers))
        plan = runner().plan(turn)
        if turn.estimate:
            return JSONResponse((await projected(plan, runner().factory)).model_dump(mode="json"))
        events = runner().run(plan)
        shape = ResponseShape(turn, body.get("tool_choice"))
        if turn.stream:
            return sse_response(response_frames(events, shape, keepalive_s))
        outcome = await until_disconnect(request, lambda: _outcome(events))
        return JSONResponse(shape.whole(outcome))

    async def models(request: Request, body: dict[str, Any]) -> Response:
        ctx = FusionContext(**base)
        entries = [
            _model_entry(
                slug,
                "Fusion: a panel answers, a judge compares, a synthesis writes the answer.",
            )
            for slug in sorted(FUSION_ALIASES)
        ]
        seen = set(FUSION_ALIASES)
        for slug in (*ctx.panel, ctx.judge, ctx.synthesizer):
            if slug not in seen:
                seen.add(slug)
                entries.append(_model_entry(slug, "A model of this server's default panel."))
        return JSONResponse(
            {
                "object": "list",
                "data": entries,
                "total_count": len(entries),
                "links": {"next": None},
            }
        )

    routes: list[BaseRoute] = []
    for prefix in BASES:
        routes += [
            Route(f"{prefix}/chat/completions", guarded(chat), methods=["POST"]),
            Route(f"{prefix}/responses", guarded(responses), methods=["POST"]),
            Route(f"{prefix}/models", guarded(models), methods=["GET"]),
        ]
    return routes
