"""The outcome of one certification run, in the shape the contract stores and serves."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from certq.certification.scoring import Status


@dataclass(frozen=True)
class Verdict:
    """`retryable` is True only for infrastructure errors that may pass later (the queue retries the job)."""

    status: Status
    passed: bool
    score: int
    rating: str
    test_results: list[dict[str, Any]]
    metrics: dict[str, Any]
    error_category: str | None
    error_message: str | None
    retryable: bool
    duration_ms: int
    started_at: str
    finished_at: str
    suite_version: str
    provider: str
    api_model_id: str
    region: str
    retry_after_s: float | None = None
    capabilities: dict[str, list[str]] | None = None  # {"verified", "failed", "notDeclared"}: capability names

    def to_json(self) -> dict[str, Any]:
        """camelCase, as the contract's certification fields; no secrets are ever part of a verdict."""
        return {
            "status": self.status,
            "passed": self.passed,
            "score": self.score,
            "rating": self.rating,
            "testResults": self.test_results,
            "metrics": self.metrics,
            "errorCategory": self.error_category,
            "errorMessage": self.error_message,
            "retryable": self.retryable,
            "retryAfterMs": None if self.retry_after_s is None else int(self.retry_after_s * 1000),
            "durationMs": self.duration_ms,
            "startedAt": self.started_at,
            "finishedAt": self.finished_at,
            "suiteVersion": self.suite_version,
            "provider": self.provider,
            "apiModelId": self.api_model_id,
            "region": self.region,
            "capabilities": self.capabilities or {"verified": [], "failed": [], "notDeclared": []},
        }
