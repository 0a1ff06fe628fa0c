"""Plot the main curves from ``benchmarks/results/*.json`` into ``benchmarks/results/fusion.png``.

Needs matplotlib (the ``bench`` extra). Panels missing their JSON are left blank.

    python -m benchmarks.plot
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from benchmarks._common import RESULTS

COLOURS = {"fusion": "tab:blue", "floor_a": "tab:orange", "floor_b": "tab:green"}
LABELS = {
    "fusion": "fusion graph",
    "floor_a": "floor (a): ChatOpenAI + gather",
    "floor_b": "floor (b): raw aiohttp",
}


def _load(name: str) -> dict[str, Any] | None:
    path = RESULTS / f"{name}.json"
    return json.loads(path.read_text()) if path.exists() else None


def main() -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, 2, figsize=(12, 9))
    (cp_ax, tput_ax), (over_ax, tok_ax) = axes

    cp = _load("critical_path")
    if cp:
        panels = [r["panel"] for r in cp["runs"]]
        for name in ("fusion", "floor_a", "floor_b"):
            if name not in cp["runs"][0]:
                continue
            for stat, style in (("median", "-o"), ("p99", ":^")):
                cp_ax.plot(
                    panels,
                    [r[name]["ratio"][stat] for r in cp["runs"]],
                    style,
                    color=COLOURS[name],
                    label=f"{LABELS[name]} ({stat})",
                )
        cp_ax.axhline(cp["target_ratio_at_8"], color="grey", ls="--", lw=1, label="target")
        cp_ax.set_xscale("log", base=2)
        cp_ax.set_xticks(panels, [str(p) for p in panels])
        cp_ax.set_xlabel("panel size (latencies 0.2 to 2 s; judge 0.3 s; synthesis 0.2 s)")
        cp_ax.set_ylabel("wall time / critical path")
        cp_ax.set_title("1. Fusion wall time over its critical path")
        cp_ax.legend(fontsize=7)

    conc = _load("concurrency")
    if conc:
        sdk = _load("concurrency_sdk-pool")
        series = [(name, conc, COLOURS[name], LABELS[name], "-") for name in COLOURS]
        if sdk:
            series.append(
                ("fusion", sdk, "tab:purple", "fusion graph on the SDK's default pool", "--")
            )
        for name, data, colour, label, line in series:
            runs = [r for r in data["runs"] if r["impl"] == name]
            done = [r for r in runs if r["completed"] and not r.get("stuck")]
            levels = [r["level"] for r in done]
            tput_ax.plot(
                levels, [r["throughput_per_s"] for r in done], line + "o", color=colour, label=label
            )
            over_ax.plot(
                levels,
                [r["overhead_ms"]["median"] for r in done],
                line + "o",
                color=colour,
                label=f"{label} p50",
            )
            over_ax.plot(
                levels,
                [r["overhead_ms"]["p99"] for r in done],
                ":^",
                color=colour,
                label=f"{label} p99",
            )
            for r in runs:
                if not r["completed"] or r.get("stuck"):
                    tput_ax.annotate(
                        f"{label}, {r['level']} in flight: none done in {r['budget_s']:.0f} s",
                        (r["level"], 0.04),
                        xycoords=("data", "axes fraction"),
                        color=colour,
                        fontsize=7,
                        ha="right",
                    )
        ideal = sorted({(r["level"], r["ideal_throughput_per_s"]) for r in conc["runs"]})
        tput_ax.plot(
            [i[0] for i in ideal],
            [i[1] for i in ideal],
            "--",
            color="grey",
            label="in flight / critical path",
        )
        for ax in (tput_ax, over_ax):
            ax.set_xscale("log")
            ax.set_yscale("log")
            ax.set_xlabel("fusions in flight (8 panelists, critical path 0.5 s, 2 cores)")
            ax.legend(fontsize=6)
        tput_ax.set_ylabel("fusions / s")
        tput_ax.set_title("3. Throughput")
        over_ax.set_ylabel("latency - critical path (ms)")
        over_ax.set_title("3. Overhead over the critical path")

    tok = _load("tokens")
    if tok:
        grid = [r for r in tok["runs"] if r.get("series") != "cap"]
        for chars in sorted({r["series"] for r in grid}):
            runs = [r for r in grid if r["series"] == chars]
            tok_ax.plot(
                [r["panel_tokens"] for r in runs],
                [r["judge_prompt_tokens"] for r in runs],
                "-o",
                label=f"1, 2, 4, 8 answers of {chars} chars",
            )
        caps = [r for r in tok["runs"] if r.get("series") == "cap"]
        tok_ax.plot(
            [r["panel_tokens"] for r in caps],
            [r["judge_prompt_tokens"] for r in caps],
            "s",
            color="red",
            label="8 answers, one or all of 200,000 chars (capped)",
        )
        lim = max(r["panel_tokens"] for r in tok["runs"])
        tok_ax.plot([10, lim], [10, lim], "--", color="grey", label="judge = panel answers")
        tok_ax.set_xscale("log")
        tok_ax.set_yscale("log")
        tok_ax.set_xlabel(f"sum of panel answers (tokens, {tok['tokenizer']})")
        tok_ax.set_ylabel("judge prompt (tokens)")
        tok_ax.set_title("6. What the judge is sent")
        tok_ax.legend(fontsize=7)

    fig.tight_layout()
    out = RESULTS / "fusion.png"
    fig.savefig(out, dpi=110)
    print(f"wrote {out}")
    return out


if __name__ == "__main__":
    main()
