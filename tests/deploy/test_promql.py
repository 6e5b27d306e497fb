"""Prometheus itself accepts our rules, config and every query (promtool; skipped where it is not installed)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.deploy.helpers import ROOT, find, kubernetes_objects

# `python3 -m certq.bootstrap test` puts promtool next to the virtualenv's python.
_BESIDE_PYTHON = Path(sys.executable).parent / "promtool"
PROMTOOL = shutil.which("promtool") or (str(_BESIDE_PYTHON) if _BESIDE_PYTHON.exists() else None)
pytestmark = pytest.mark.skipif(PROMTOOL is None, reason="promtool is not installed (Debian package prometheus)")


def _promtool(*args: str) -> subprocess.CompletedProcess[str]:
    assert PROMTOOL is not None
    return subprocess.run([PROMTOOL, *args], capture_output=True, text=True, timeout=60)


def test_alert_rules_are_valid_prometheus_rules() -> None:
    checked = _promtool("check", "rules", str(ROOT / "deploy/prometheus/alerts.yml"))
    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_alert_rules_fire_when_they_should(tmp_path: Path) -> None:
    tested = _promtool("test", "rules", str(ROOT / "deploy/prometheus/alerts.test.yml"))
    assert tested.returncode == 0, tested.stdout + tested.stderr


def test_the_live_tests_rules_are_the_shipped_ones_with_only_for_shortened(tmp_path: Path) -> None:
    from tests.deploy.test_alerts_live import shortened_rules

    shipped = yaml.safe_load((ROOT / "deploy/prometheus/alerts.yml").read_text())
    shortened = shortened_rules()
    pairs = [
        (a, b)
        for g, h in zip(shipped["groups"], shortened["groups"], strict=True)
        for a, b in zip(g["rules"], h["rules"], strict=True)
    ]
    assert pairs and all(
        {k: v for k, v in a.items() if k != "for"} == {k: v for k, v in b.items() if k != "for"} for a, b in pairs
    )
    assert {b["for"] for _, b in pairs} <= {"0ms", "2000ms", "3000ms", "5000ms", "10000ms", "15000ms", "30000ms"}
    (tmp_path / "alerts.yml").write_text(yaml.safe_dump(shortened))
    checked = _promtool("check", "rules", str(tmp_path / "alerts.yml"))
    assert checked.returncode == 0, checked.stdout + checked.stderr


def _rule_tests() -> list[dict[str, Any]]:
    tests: list[dict[str, Any]] = yaml.safe_load((ROOT / "deploy/prometheus/alerts.test.yml").read_text())["tests"]
    return tests


def test_every_alert_has_a_rule_test_that_fires_it() -> None:
    shipped = yaml.safe_load((ROOT / "deploy/prometheus/alerts.yml").read_text())
    alerts = {rule["alert"] for group in shipped["groups"] for rule in group["rules"]}
    fired = {case["alertname"] for test in _rule_tests() for case in test["alert_rule_test"] if case["exp_alerts"]}
    assert alerts - fired == set()


def test_counters_in_the_rule_tests_start_at_zero_as_real_processes_start_them() -> None:
    # The one exception shows what a counter born at its first increment hides; its name says so.
    late = [
        series["series"]
        for test in _rule_tests()
        if not test["name"].startswith("why")
        for series in test["input_series"]
        if series["series"].split("{")[0].endswith("_total") and not series["values"].startswith("0")
    ]
    assert late == []


def test_scrape_config_is_valid(tmp_path: Path) -> None:
    config = (ROOT / "deploy/prometheus/prometheus.yml").read_text()
    shutil.copy(ROOT / "deploy/prometheus/alerts.yml", tmp_path / "alerts.yml")
    (tmp_path / "prometheus.yml").write_text(config.replace("/etc/prometheus/alerts.yml", str(tmp_path / "alerts.yml")))
    checked = _promtool("check", "config", str(tmp_path / "prometheus.yml"))
    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_dashboard_and_autoscaler_queries_parse(tmp_path: Path) -> None:
    dashboard = json.loads((ROOT / "deploy/grafana/certq-dashboard.json").read_text())
    exprs = [
        t["expr"].replace("$queue", "model-certification")
        for panel in dashboard["panels"]
        for t in panel.get("targets", [])
    ]
    scaled = find(kubernetes_objects(), "ScaledObject", "certq-worker")
    exprs += [t["metadata"]["query"] for t in scaled["spec"]["triggers"] if t["type"] == "prometheus"]
    rules = {
        "groups": [
            {"name": "queries", "rules": [{"record": f"certq:query_{i}", "expr": e} for i, e in enumerate(exprs)]}
        ]
    }
    (tmp_path / "queries.yml").write_text(yaml.safe_dump(rules))
    checked = _promtool("check", "rules", str(tmp_path / "queries.yml"))
    assert checked.returncode == 0, checked.stdout + checked.stderr
