"""How a verdict looks on a terminal: headline, one row per probe, metrics, the error if any."""

from __future__ import annotations

from typing import Any

from certq.cli.common import table
from certq.store import CertificationRecord


def record_view(record: CertificationRecord) -> dict[str, Any]:
    """A stored certification in the API's camelCase shape (what `render_verdict` reads)."""
    return {"id": str(record.id), "jobId": str(record.job_id), "status": record.status, "passed": record.passed,
            "score": record.score, "rating": record.rating, "testResults": record.test_results or [],
            "metrics": record.metrics or {}, "errorCategory": record.error_category,
            "errorMessage": record.error_message, "attempts": record.attempts, "durationMs": record.duration_ms}


def render_verdict(certification: dict[str, Any]) -> str:
    """The verdict as an operator reads it: headline, probe table, metrics, error if any."""
    status = certification.get("status")
    score = certification.get("score")
    lines = [f"Verdict: {status}   score {score if score is not None else '-'}/100   "
             f"rating {certification.get('rating') or '-'}   passed {certification.get('passed')}   "
             f"attempts {certification.get('attempts', '-')}   "
             f"{(certification.get('durationMs') or 0) / 1000:.1f}s"]
    probes = certification.get("testResults") or []
    if probes:
        rows = [[p.get("name"), "PASS" if p.get("passed") else "FAIL", p.get("score", "-"),
                 f"{p['latencyMs']:.0f} ms" if isinstance(p.get("latencyMs"), int | float) else "-",
                 str(p.get("detail") or "")[:70]] for p in probes]
        lines += ["", table(rows, ["probe", "result", "score", "latency", "detail"])]
    shown = render_metrics(certification.get("metrics") or {})
    if shown:
        lines += ["", f"metrics: {shown}"]
    if certification.get("errorCategory"):
        lines += ["", f"error: {certification['errorCategory']}: {certification.get('errorMessage') or ''}"]
    return "\n".join(lines)


_METRICS = (("latency p50", ("latencyMs", "p50"), " ms"), ("p95", ("latencyMs", "p95"), " ms"),
            ("time to first token p50", ("ttftMs", "p50"), " ms"),
            ("output", ("outputTokensPerSecond", "p50"), " tokens/s"), ("tokens", ("tokens", "total"), ""),
            ("requests", ("requests",), ""), ("retries", ("retries",), ""))


def render_metrics(metrics: dict[str, Any]) -> str:
    """The few numbers an operator looks at first, from the verdict's `metrics` object."""
    parts: list[str] = []
    for label, path, unit in _METRICS:
        value: Any = metrics
        for key in path:
            value = value.get(key) if isinstance(value, dict) else None
        if isinstance(value, int | float) and not isinstance(value, bool):
            parts.append(f"{label} {value:.0f}{unit}" if isinstance(value, float) else f"{label} {value}{unit}")
    return ", ".join(parts)
