"""Weighted scores, critical caps, the answer-quality floor, rating bands and status words."""

from __future__ import annotations

import pytest

from certq.certification.chat import Check
from certq.certification.scoring import ProbeResult, aggregate, rating, status_for


def probe(
    name: str, weight: float, score: float, *, critical: bool = False, required: bool = False, quality: bool = False
) -> ProbeResult:
    return ProbeResult(
        name, weight, critical, quality=quality, checks=[Check("c", score >= 1.0, required=required, credit=score)]
    )


@pytest.mark.parametrize(
    ("score", "letter"),
    [(100, "A"), (90, "A"), (89, "B"), (80, "B"), (79, "C"), (70, "C"), (69, "D"), (60, "D"), (59, "F"), (0, "F")],
)
def test_rating_bands(score: int, letter: str) -> None:
    assert rating(score) == letter


@pytest.mark.parametrize(
    ("score", "critical", "status"),
    [
        (95, (), "CERTIFIED"),
        (80, (), "CERTIFIED"),
        (79, (), "QUALITY_WARNING"),
        (60, (), "QUALITY_WARNING"),
        (59, (), "FAILED"),
        (95, ("streaming",), "FAILED"),
    ],
)
def test_status_words(score: int, critical: tuple[str, ...], status: str) -> None:
    assert status_for(score, critical) == status


def test_score_is_the_weighted_mean_of_scored_probes() -> None:
    results = [probe("a", 30, 1.0), probe("b", 10, 0.0), probe("c", 60, 0.5)]
    assert aggregate(results).score == round(100 * (30 + 0 + 30) / 100)
    assert aggregate(results).failed_probes == ("b", "c")


def test_probes_not_scored_leave_the_denominator() -> None:
    errored = ProbeResult("e", 50, False, outcome="error")
    assert aggregate([probe("a", 50, 1.0), errored]).score == 100


def test_a_failed_critical_probe_caps_the_score_at_59() -> None:
    results = [probe("gate", 10, 0.0, critical=True, required=True), probe("rest", 90, 1.0)]
    summary = aggregate(results)
    assert summary.score == 59
    assert summary.critical_failures == ("gate",)
    assert rating(summary.score) == "F"


def test_nonsense_answers_fail_even_when_the_protocol_is_perfect() -> None:
    results = [
        probe("protocol", 60, 1.0, critical=True, required=True),
        probe("qa", 20, 0.0, quality=True),
        probe("json", 20, 0.4, quality=True),
    ]
    summary = aggregate(results)
    assert summary.critical_failures == ("answer_quality",)
    assert summary.score == 59


def test_partial_credit_and_pass_score() -> None:
    accuracy = ProbeResult(
        "qa",
        15,
        False,
        pass_score=0.5,
        checks=[Check("a", True, required=False), Check("b", True, required=False), Check("c", False, required=False)],
    )
    assert accuracy.score == pytest.approx(2 / 3)
    assert accuracy.passed
    assert accuracy.to_json()["score"] == 67


def test_required_checks_decide_passing_and_informational_checks_do_not_count() -> None:
    result = ProbeResult("p", 10, True, checks=[Check("must", True), Check("info", False, required=False, weight=0.0)])
    assert result.passed and result.score == 1.0 and not result.critical_failed
