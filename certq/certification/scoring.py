"""From probe results to a score, a rating and a status: weighted mean, critical caps, A-F bands."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from certq.certification.chat import Check
from certq.certification.errors import ErrorCategory

Outcome = Literal["scored", "error", "skipped"]
Status = Literal["CERTIFIED", "QUALITY_WARNING", "FAILED"]
CRITICAL_CAP = 59
QUALITY_FLOOR = 0.5
RATING_BANDS: tuple[tuple[int, str], ...] = ((90, "A"), (80, "B"), (70, "C"), (60, "D"))


@dataclass
class ProbeResult:
    """One probe's verdict. Only `scored` results count; `error` means the run machinery or the endpoint failed."""

    name: str
    weight: float
    critical: bool
    quality: bool = False  # part of the answer-quality group, which must average >= QUALITY_FLOOR
    checks: list[Check] = field(default_factory=list)
    outcome: Outcome = "scored"
    pass_score: float = 1.0  # a probe without required checks passes at this score (e.g. 0.5 for accuracy probes)
    latency_ms: float | None = None
    requests: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    capability: str | None = None  # the declared capability this probe certifies (weight 0: not in the score)
    error_category: ErrorCategory | None = None
    error_message: str | None = None
    excerpt: str | None = None

    @property
    def score(self) -> float | None:
        """Weighted mean of check scores in [0, 1]; None when not scored."""
        if self.outcome != "scored":
            return None
        total = sum(c.weight for c in self.checks)
        if total <= 0:
            return 1.0 if all(c.passed for c in self.checks if c.required) else 0.0
        return sum(c.weight * c.score for c in self.checks) / total

    @property
    def passed(self) -> bool:
        score = self.score
        if score is None:
            return False
        required = [c for c in self.checks if c.required]
        if required:
            return all(c.passed for c in required)
        return score >= self.pass_score

    @property
    def critical_failed(self) -> bool:
        """A critical probe failed on a *structural* (required) check; infrastructure errors are not this."""
        if not self.critical or self.outcome != "scored":
            return False
        return any(c.required and not c.passed for c in self.checks)

    def detail(self) -> str:
        if self.outcome == "error":
            return f"{self.error_category.value if self.error_category else 'ERROR'}: {self.error_message or ''}"
        if self.outcome == "skipped":
            return self.error_message or "not run"
        failed = [f"{c.name}: {c.detail}" if c.detail else c.name for c in self.checks if not c.passed and c.weight > 0]
        return "; ".join(failed) if failed else "all checks passed"

    def to_json(self) -> dict[str, Any]:
        score = self.score
        return {
            "name": self.name,
            "passed": self.passed,
            "score": None if score is None else round(100 * score),
            "latencyMs": None if self.latency_ms is None else round(self.latency_ms, 1),
            "detail": self.detail(),
            "critical": self.critical,
            "weight": self.weight,
            "outcome": self.outcome,
            "requests": self.requests,
            "tokens": {"prompt": self.prompt_tokens, "completion": self.completion_tokens},
            **({"capability": self.capability} if self.capability else {}),
            "errorCategory": self.error_category.value if self.error_category else None,
            "checks": [
                {"name": c.name, "passed": c.passed, "detail": c.detail}
                for c in self.checks
                if c.weight > 0 or c.detail
            ],
            "excerpt": self.excerpt,
        }


def rating(score: int) -> str:
    for floor, letter in RATING_BANDS:
        if score >= floor:
            return letter
    return "F"


@dataclass(frozen=True)
class Aggregate:
    score: int
    critical_failures: tuple[str, ...]
    failed_probes: tuple[str, ...]


def aggregate(results: Sequence[ProbeResult]) -> Aggregate:
    """`round(100 * Σ w·s / Σ w)` over scored probes, capped at 59 when a critical probe failed or the
    answer-quality probes average below QUALITY_FLOOR."""
    scored = [r for r in results if r.outcome == "scored" and r.weight > 0]
    total = sum(r.weight for r in scored)
    raw = 0.0 if total <= 0 else 100.0 * sum(r.weight * (r.score or 0.0) for r in scored) / total
    score = math.floor(raw + 0.5)
    critical = tuple(r.name for r in results if r.critical_failed)
    quality = [r for r in scored if r.quality]
    quality_weight = sum(r.weight for r in quality)
    if quality_weight > 0 and sum(r.weight * (r.score or 0.0) for r in quality) / quality_weight < QUALITY_FLOOR:
        # Protocol-perfect nonsense must not come out "usable": the answer-quality group counts as critical.
        critical += ("answer_quality",)
    if critical:
        score = min(score, CRITICAL_CAP)
    failed = tuple(r.name for r in scored if not r.passed)
    return Aggregate(score=score, critical_failures=critical, failed_probes=failed)


RELIABILITY_WEIGHT = 30
"""Points a run loses at 0% availability; linear in the share of requests that failed transiently."""


def reliability_penalty(availability: float) -> int:
    """Score points off for transient failures: 1 in 3 requests failing costs 10 points, none costs 0."""
    return math.floor(RELIABILITY_WEIGHT * max(0.0, 1.0 - availability) + 0.5)


def status_for(
    score: int, critical_failures: Sequence[str], certify_score: int = 80, warning_score: int = 60
) -> Status:
    """CERTIFIED at or above `certify_score` with every critical probe passing; QUALITY_WARNING down to
    `warning_score` (usable, not certified); FAILED below, or on any critical failure."""
    if critical_failures or score < warning_score:
        return "FAILED"
    return "CERTIFIED" if score >= certify_score else "QUALITY_WARNING"
