"""How a verdict looks on a terminal: headline, one row per probe, metrics, the error if any."""

from __future__ import annotations

from typing import Any

from certq.cli.common import printable, table
from certq.store import CertificationRecord


def record_view(record: CertificationRecord) -> dict[str, Any]:
    """A stored certification in the API's camelCase shape (what `render_verdict` reads)."""
    return {
        "id": str(record.id),
        "jobId": str(record.job_id),
        "status": record.status,
        "passed": record.passed,
        "score": record.score,
        "rating": record.rating,
        "testResults": record.test_results or [],
        "metrics": record.metrics or {},
        "errorCategory": record.error_category,
        "errorMessage": record.error_message,
        "attempts": record.attempts,
        "durationMs": record.duration_ms,
    }


def render_verdict(certification: dict[str, Any]) -> str:
    """The verdict as an operator reads it: headline, probe table, metrics, error if any. The one rendering of
    a verdict: `certify` (a Verdict's to_json), `enqueue --wait` (a stored record) and the demo (the API's answer)."""
    status = certification.get("status")
    score = certification.get("score")
    attempts = certification.get("attempts")
    lines = [
        f"Verdict: {status}   score {score if score is not None else '-'}/100   "
        f"rating {certification.get('rating') or '-'}   passed {certification.get('passed')}   "
        + (f"attempts {attempts}   " if attempts is not None else "")
        + f"{(certification.get('durationMs') or 0) / 1000:.1f}s"
    ]
    probes = certification.get("testResults") or []
    if probes:
        rows = [
            [
                p.get("name"),
                "yes" if p.get("critical") else "",
                _result(p),
                "-" if p.get("score") is None else p["score"],
                f"{p['latencyMs']:.0f} ms" if isinstance(p.get("latencyMs"), int | float) else "-",
                " ".join(str(p.get("detail") or "").split())[:70],
            ]
            for p in probes
        ]
        lines += ["", table(rows, ["probe", "critical", "result", "score", "latency", "detail"])]
    shown = render_metrics(certification.get("metrics") or {})
    if shown:
        lines += ["", f"metrics: {shown}"]
    if certification.get("errorCategory"):
        retry = " (retryable)" if certification.get("retryable") else ""
        lines += [
            "",
            printable(f"error: {certification['errorCategory']}{retry}: {certification.get('errorMessage') or ''}"),
        ]
    return "\n".join(lines)


def _result(probe: dict[str, Any]) -> str:
    """PASS/FAIL for a scored probe; otherwise why it has no score (skipped, error...)."""
    outcome = probe.get("outcome")
    if outcome not in (None, "scored"):
        return str(outcome)
    return "PASS" if probe.get("passed") else "FAIL"


_METRICS = (
    ("latency p50", ("latencyMs", "p50"), " ms"),
    ("p95", ("latencyMs", "p95"), " ms"),
    ("time to first token p50", ("ttftMs", "p50"), " ms"),
    ("output", ("outputTokensPerSecond", "p50"), " tokens/s"),
    ("tokens", ("tokens", "total"), ""),
    ("prompt tokens", ("tokens", "prompt"), ""),
    ("completion tokens", ("tokens", "completion"), ""),
    ("requests", ("requests",), ""),
    ("retries", ("retries",), ""),
)


def render_metrics(metrics: dict[str, Any]) -> str:
    """The few numbers an operator looks at first, from the verdict's `metrics` object."""
    parts: list[str] = []
    for label, path, unit in _METRICS:
        value: Any = metrics
        for key in path:
            value = value.get(key) if isinstance(value, dict) else None
        if isinstance(value, int | float) and not isinstance(value, bool):
            parts.append(f"{label} {value:.0f}{unit}" if isinstance(value, float) else f"{label} {value}{unit}")
    statuses = metrics.get("httpStatusCounts")
    if isinstance(statuses, dict) and statuses:
        parts.append("HTTP " + " ".join(f"{code}x{count}" for code, count in statuses.items()))
    return ", ".join(parts)
