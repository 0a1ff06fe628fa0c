"""Which LangChain client keeps what OpenRouter returns: ``ChatOpenAI`` or ``ChatOpenRouter``.

Every client talks to the scripted OpenAI-compatible server on 127.0.0.1
(``tests/openai_server.py``), which answers like OpenRouter with server tools
on: ``url_citation`` annotations on the message, or a refusal. For each client
it records whether the annotations and the refusal reach the LangChain
message, streamed and not, whether the request carried the server tools and
the ``x-fusion-depth`` header, and whether the client can run on the graph's
pooled, redacting HTTP client.

    python -m benchmarks.citation_clients   # writes benchmarks/results/citation_clients.json

``ChatOpenRouter`` is measured where ``langchain-openrouter`` is importable
(it pins an older pydantic, so it is best tried in a scratch environment).
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import BaseMessage, HumanMessage

from tests.openai_server import OpenAIServer, Reply

RESULTS = Path(__file__).parent / "results" / "citation_clients.json"
ANNOTATIONS = [
    {
        "type": "url_citation",
        "url_citation": {
            "url": "https://example.org/grid-report",
            "title": "Grid report",
            "start_index": 0,
            "end_index": 10,
        },
    }
]
SERVER_TOOLS = [{"type": "openrouter:web_search"}, {"type": "openrouter:web_fetch"}]


def _has_annotations(message: BaseMessage) -> bool:
    return "grid-report" in json.dumps(
        [message.additional_kwargs, message.response_metadata], default=str
    )


def _has_refusal(message: BaseMessage) -> bool:
    return "cannot help" in json.dumps(
        [message.additional_kwargs, message.response_metadata], default=str
    )


async def _measure(name: str, model: BaseChatModel, server: OpenAIServer) -> dict[str, Any]:
    row: dict[str, Any] = {"client": name}
    server.requests.clear()
    bound = model.bind(tools=SERVER_TOOLS)
    ask = [HumanMessage("What does the grid report say?")]
    try:
        server.script("cite/model", Reply("see the report", annotations=ANNOTATIONS))
        row["annotations_kept"] = _has_annotations(await bound.ainvoke(ask))
        merged: Any = None
        async for chunk in bound.astream(ask):
            merged = chunk if merged is None else merged + chunk
        row["annotations_kept_streamed"] = _has_annotations(merged)
        server.script("cite/model", Reply("", refusal="I cannot help with that."))
        row["refusal_kept"] = _has_refusal(await model.ainvoke(ask))
    except Exception as exc:  # noqa: BLE001 - a client that cannot make the call is a result
        row["error"] = f"{type(exc).__name__}: {exc}"[:300]
    first = server.requests[0].body if server.requests else {}
    row["server_tools_sent"] = first.get("tools") == SERVER_TOOLS
    row["depth_header_sent"] = bool(
        server.requests and server.requests[0].headers.get("x-fusion-depth") == "1"
    )
    return row


async def main() -> list[dict[str, Any]]:
    from langchain_openai import ChatOpenAI

    rows = []
    with OpenAIServer() as server:
        common = {"model": "cite/model", "base_url": server.base_url, "api_key": "sk-bench-none"}
        headers = {"x-fusion-depth": "1"}
        auto = ChatOpenAI(**common, default_headers=headers, stream_usage=True)  # type: ignore[arg-type]
        row = await _measure("langchain_openai.ChatOpenAI", auto, server)
        # A bound tool that is not a function makes it switch to the Responses API.
        row["used_chat_completions"] = bool(server.requests)
        rows.append(row)
        plain = ChatOpenAI(
            **common,  # type: ignore[arg-type]
            default_headers=headers,
            stream_usage=True,
            use_responses_api=False,
        )
        rows.append(
            await _measure("langchain_openai.ChatOpenAI(use_responses_api=False)", plain, server)
        )
        try:
            from langfusion.graph.models.openrouter import CitingChatOpenAI
            from langfusion.graph.models.pools import pooled_async_client
        except ImportError:
            pass
        else:
            citing = CitingChatOpenAI(
                **common,  # type: ignore[arg-type]
                default_headers=headers,
                stream_usage=True,
                http_async_client=pooled_async_client(server.base_url),
            )
            row = await _measure(
                "langfusion CitingChatOpenAI (ChatOpenAI subclass)", citing, server
            )
            rows.append(row | {"pooled_redacting_client": True})
        try:
            from langchain_openrouter import ChatOpenRouter
        except ImportError:
            rows.append({"client": "langchain_openrouter.ChatOpenRouter", "error": "not installed"})
        else:
            router = ChatOpenRouter(
                model="cite/model",
                openrouter_api_key="sk-bench-none",  # type: ignore[arg-type]
                openrouter_api_base=server.base_url,
                default_headers=headers,
            )
            row = await _measure("langchain_openrouter.ChatOpenRouter", router, server)
            # It builds its own httpx clients inside the openrouter SDK: no
            # way to hand it the graph's pooled, redacting one.
            rows.append(row | {"pooled_redacting_client": False})
    return rows


if __name__ == "__main__":
    measured = [r for r in asyncio.run(main()) if r.get("error") != "not installed"]
    # Rows measured in another environment (ChatOpenRouter's) are kept.
    previous = json.loads(RESULTS.read_text()) if RESULTS.exists() else []
    names = {row["client"] for row in measured}
    rows = [row for row in previous if row["client"] not in names] + measured
    RESULTS.write_text(json.dumps(rows, indent=2) + "\n")
    print(json.dumps(rows, indent=2))
