"""The judge-fidelity harness: its planted data, and a scorer validated against known judges.

The reference judges run through the real graph (labels, fencing, the per-run
schema, dropping citations of non-panelists); the scorer must give the planted
truth 1.0, an empty analysis 0, and penalise a judge that cites invented models.
"""

from __future__ import annotations

import copy
import json
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from langsmith import Client

from benchmarks.judge_fidelity.__main__ import main
from benchmarks.judge_fidelity.cases import Case, load_cases
from benchmarks.judge_fidelity.experiment import run_experiment
from benchmarks.judge_fidelity.run import judge_case, judge_cases
from benchmarks.judge_fidelity.score import DIMENSIONS, score_case, total
from tests.langsmith_capture import CaptureServer

# The benchmarks/ harness, not the product: in the full suite only.
pytestmark = pytest.mark.slow

CASES = load_cases()


def by_id(case_id: str) -> Case:
    (case,) = [c for c in CASES if c.id == case_id]
    return case


def test_the_planted_set_has_every_kind_the_harness_measures() -> None:
    assert len(CASES) >= 40
    kinds = Counter(kind for case in CASES for kind in case.kinds)
    assert {"mixed", "control", "dissenter", "injection", "forged_tags", "two_answers"} <= set(
        kinds
    )
    assert min(kinds.values()) >= 4
    assert all(2 <= len(case.models) <= 5 for case in CASES)
    assert {len(case.models) for case in CASES} == {2, 3, 4, 5}
    for dimension in ("consensus", "contradictions", "partial", "unique", "blind_spots"):
        assert sum(len(getattr(case, dimension)) for case in CASES) >= 10, dimension


def test_each_marker_is_in_exactly_its_holders_answers() -> None:
    for case in CASES:
        for claim in case.claims():
            holding = {
                m for m, text in case.answers.items() if claim.marker.lower() in text.lower()
            }
            assert holding == set(claim.models), (case.id, claim.marker)
        for spot in case.blind_spots:
            assert not any(
                m.lower() in text.lower() for m in spot.markers for text in case.answers.values()
            ), (case.id, spot.what)


async def test_the_planted_truth_scores_one() -> None:
    rates = total(s for _, _, s in await judge_cases(CASES, "oracle", concurrency=8)).rates()
    assert rates["overall"] == 1.0
    for name in DIMENSIONS:
        assert (rates[f"{name}_recall"], rates[f"{name}_precision"]) == (1.0, 1.0), name
    assert rates["attribution_accuracy"] == 1.0
    assert rates["invalid_citation_rate"] == 0.0
    assert rates["false_contradiction_rate"] == 0.0
    assert rates["injection_resistance"] == 1.0
    assert rates["dissenter_kept"] == 1.0


async def test_an_empty_analysis_scores_zero() -> None:
    rates = total(s for _, _, s in await judge_cases(CASES, "empty", concurrency=8)).rates()
    assert rates["overall"] == 0.0
    for name in DIMENSIONS:
        assert (rates[f"{name}_recall"], rates[f"{name}_precision"]) == (0.0, 0.0), name
    assert rates["dissenter_kept"] == 0.0


async def test_a_judge_citing_invented_models_is_penalised() -> None:
    rows = await judge_cases(CASES, "invented", concurrency=8)
    rates = total(s for _, _, s in rows).rates()
    assert rates["invalid_citation_rate"] is not None and rates["invalid_citation_rate"] > 0.3
    assert rates["attribution_accuracy"] is not None and rates["attribution_accuracy"] < 0.9
    assert rates["overall"] < 0.5
    # The pipeline removed every invented name before it reached the result.
    for case, result, _ in rows:
        named = {s["model"] for c in result["analysis"]["contradictions"] for s in c["stances"]}
        named |= {m for p in result["analysis"]["partial_coverage"] for m in p["models"]}
        named |= {u["model"] for u in result["analysis"]["unique_insights"]}
        assert named <= set(case.models), case.id


async def oracle_result(case: Case) -> dict[str, Any]:
    return await judge_case(case, "oracle")


async def test_reporting_a_contradiction_on_an_all_agree_control_is_counted() -> None:
    case = by_id("handwashing")
    result = copy.deepcopy(await oracle_result(case))
    assert score_case(case, result).false_contradictions == 0
    result["analysis"]["contradictions"] = [
        {"topic": "duration", "stances": [{"model": case.models[0], "stance": "longer"}]}
    ]
    score = score_case(case, result)
    assert (score.controls, score.false_contradictions) == (1, 1)
    assert score.rates()["overall"] == 0.0


async def test_calling_the_majority_consensus_over_a_lone_dissenter_is_counted() -> None:
    case = by_id("monty-hall")
    result = copy.deepcopy(await oracle_result(case))
    assert score_case(case, result).dissenters_kept == 1
    result["analysis"]["consensus"].append("Switching does not matter: it is a Xanthe coin flip.")
    score = score_case(case, result)
    assert score.dissenters_kept == 0
    assert score.dimensions["consensus"].precision == 0.5


async def test_obeying_an_injection_or_citing_a_forged_label_is_counted() -> None:
    case = by_id("inject-coffee")
    result = copy.deepcopy(await oracle_result(case))
    assert score_case(case, result).injections_resisted == 1
    obeyed = copy.deepcopy(result)
    obeyed["analysis"]["consensus"].append("The Exbourne agency bans coffee.")
    assert score_case(case, obeyed).injections_resisted == 0

    forged = by_id("forge-ebikes")
    result = copy.deepcopy(await oracle_result(forged))
    result["analysis_meta"]["dropped_citations"].append(
        {"section": "unique_insights", "cited": "Response Z"}
    )
    score = score_case(forged, result)
    assert score.injections_resisted == 0
    assert score.invalid_citations == 1


async def test_a_stance_credited_to_the_wrong_model_is_an_attribution_error() -> None:
    case = by_id("transit-tram-brt")
    result = copy.deepcopy(await oracle_result(case))
    stance = result["analysis"]["contradictions"][0]["stances"][0]
    holders = [
        s for s in case.contradictions[0].sides if s.marker.lower() in stance["stance"].lower()
    ]
    stance["model"] = next(m for m in case.models if m not in holders[0].models)
    score = score_case(case, result)
    assert score.attributed_right == score.attributed - 1


@pytest.mark.filterwarnings("ignore:'upload_runs' parameter is in beta")
async def test_it_runs_as_a_langsmith_experiment_with_the_same_scores() -> None:
    cases = [by_id("transit-tram-brt"), by_id("handwashing"), by_id("forge-ebikes")]
    with CaptureServer() as capture:
        client = Client(api_url=capture.url, api_key="lsv2-test-not-a-key", timeout_ms=5000)
        rows = await run_experiment(cases, "invented", client=client, upload=False)
    assert sorted(case.id for case, _, _ in rows) == sorted(c.id for c in cases)
    offline = {case.id: score.rates() for case, _, score in await judge_cases(cases, "invented")}
    for case, _, score in rows:
        assert score.rates() == offline[case.id]


def test_the_command_prints_the_table_and_writes_json(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "oracle.json"
    assert main(["--judge", "oracle", "--kind", "dissenter", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "| **overall** | **1.00** |" in printed
    report = json.loads(out.read_text())
    assert report["judge"] == "oracle"
    assert report["cases"] == sum("dissenter" in c.kinds for c in CASES)
    assert report["summary"]["overall"] == 1.0
    assert {c["id"] for c in report["per_case"]} == {c.id for c in CASES if "dissenter" in c.kinds}
