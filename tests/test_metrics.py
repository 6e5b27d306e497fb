"""Metrics are defined once per registry, follow Prometheus naming and parse back with the official parser."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from certq.metrics import JOB_OUTCOMES, UNKNOWN_CATEGORY, Metrics, render_prometheus


def _families(metrics: Metrics) -> dict[str, list[tuple[str, dict[str, str], float]]]:
    text = generate_latest(metrics.registry).decode()
    return {f.name: [(s.name, s.labels, s.value) for s in f.samples] for f in text_string_to_metric_families(text)}


def test_two_instances_on_their_own_registries_do_not_collide() -> None:
    first, second = Metrics(CollectorRegistry()), Metrics(CollectorRegistry())
    first.job_ended("q", "completed", 0.2)
    assert ("certq_jobs_total", {"queue": "q", "outcome": "completed"}, 1.0) in _families(first)["certq_jobs"]
    assert _families(second)["certq_jobs"] == []


def test_counter_and_duration_names_follow_prometheus_conventions() -> None:
    metrics = Metrics()
    metrics.job_ended("q", "completed", 0.2)
    metrics.retry_scheduled("q", "TIMEOUT")
    metrics.stalled_recovered.labels("q").inc()
    metrics.lease_renewals_lost.labels("q").inc()
    metrics.alerts.labels("sent").inc()
    names = {name for samples in _families(metrics).values() for name, _, _ in samples}
    assert {
        "certq_jobs_total",
        "certq_job_retries_total",
        "certq_stalled_jobs_recovered_total",
        "certq_lease_renewals_lost_total",
        "certq_alerts_total",
        "certq_job_duration_seconds_bucket",
        "certq_job_duration_seconds_count",
        "certq_redis_last_success_timestamp_seconds",
    } <= names


def test_an_expected_queue_exports_every_counter_the_alert_rules_read_at_zero() -> None:
    metrics = Metrics()
    metrics.expect_queue("q", retry_categories=["TIMEOUT", "RATE_LIMITED"])
    families = _families(metrics)

    def zeros(family: str, label: str) -> dict[str, float]:
        return {labels.get(label, ""): value for name, labels, value in families[family] if name.endswith("_total")}

    assert zeros("certq_jobs", "outcome") == dict.fromkeys(JOB_OUTCOMES, 0.0)
    assert zeros("certq_job_retries", "category") == dict.fromkeys(["TIMEOUT", "RATE_LIMITED", UNKNOWN_CATEGORY], 0.0)
    assert zeros("certq_stalled_jobs_recovered", "queue") == {"q": 0.0}
    assert zeros("certq_lease_renewals_lost", "queue") == {"q": 0.0}


def test_expecting_a_queue_again_keeps_what_was_counted() -> None:
    metrics = Metrics()
    metrics.expect_queue("q")
    metrics.stalled_recovered.labels("q").inc()
    metrics.expect_queue("q")
    assert metrics.registry.get_sample_value("certq_stalled_jobs_recovered_total", {"queue": "q"}) == 1.0


def test_duration_histogram_counts_each_attempt_in_its_bucket() -> None:
    metrics = Metrics()
    for seconds in (0.001, 0.2, 42.0):
        metrics.job_ended("q", "completed", seconds)
    samples = _families(metrics)["certq_job_duration_seconds"]
    buckets = {labels["le"]: value for name, labels, value in samples if name.endswith("_bucket")}
    assert buckets["0.005"] == 1 and buckets["0.25"] == 2 and buckets["60.0"] == 3 and buckets["+Inf"] == 3
    total = next(value for name, _, value in samples if name.endswith("_sum"))
    assert abs(total - 42.201) < 1e-9


def test_retries_are_counted_by_category_with_unknown_for_none() -> None:
    metrics = Metrics()
    metrics.retry_scheduled("q", "TIMEOUT")
    metrics.retry_scheduled("q", "TIMEOUT")
    metrics.retry_scheduled("q", None)
    values = {
        labels["category"]: value
        for _, labels, value in _families(metrics)["certq_job_retries"]
        if "category" in labels
    }
    assert values == {"TIMEOUT": 2.0, "UNKNOWN": 1.0}


def test_active_jobs_are_read_from_the_callable_at_scrape_time() -> None:
    metrics = Metrics()
    active = [3]
    metrics.track_active("q", lambda: active[0])
    assert _families(metrics)["certq_active_jobs"][0][2] == 3
    active[0] = 1
    assert _families(metrics)["certq_active_jobs"][0][2] == 1


def test_redis_round_trip_sets_up_and_last_success_time() -> None:
    metrics = Metrics()
    metrics.redis_answered(True, at=1_700_000_000.0)
    metrics.redis_answered(False)
    families = _families(metrics)
    assert families["certq_redis_up"][0][2] == 0
    assert families["certq_redis_last_success_timestamp_seconds"][0][2] == 1_700_000_000.0


def test_process_collector_is_optional() -> None:
    assert "process_resident_memory_bytes" in generate_latest(Metrics(process=True).registry).decode()
    assert "process_resident_memory_bytes" not in generate_latest(Metrics().registry).decode()


def test_render_chooses_openmetrics_or_text_from_accept() -> None:
    metrics = Metrics()
    _, plain = render_prometheus(metrics.registry, "text/plain")
    body, open_metrics = render_prometheus(metrics.registry, "application/openmetrics-text; version=1.0.0")
    assert plain.startswith("text/plain") and open_metrics.startswith("application/openmetrics-text")
    assert body.rstrip().endswith(b"# EOF")
