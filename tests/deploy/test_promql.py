"""Prometheus itself accepts our rules, config and every query (promtool; skipped where it is not installed)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

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


def test_scrape_config_is_valid(tmp_path: Path) -> None:
    config = (ROOT / "deploy/prometheus/prometheus.yml").read_text()
    shutil.copy(ROOT / "deploy/prometheus/alerts.yml", tmp_path / "alerts.yml")
    (tmp_path / "prometheus.yml").write_text(config.replace("/etc/prometheus/alerts.yml", str(tmp_path / "alerts.yml")))
    checked = _promtool("check", "config", str(tmp_path / "prometheus.yml"))
    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_dashboard_and_autoscaler_queries_parse(tmp_path: Path) -> None:
    dashboard = json.loads((ROOT / "deploy/grafana/certq-dashboard.json").read_text())
    exprs = [t["expr"].replace("$queue", "model-certification")
             for panel in dashboard["panels"] for t in panel.get("targets", [])]
    scaled = find(kubernetes_objects(), "ScaledObject", "certq-worker")
    exprs += [t["metadata"]["query"] for t in scaled["spec"]["triggers"] if t["type"] == "prometheus"]
    rules = {"groups": [{"name": "queries", "rules": [{"record": f"certq:query_{i}", "expr": e}
                                                       for i, e in enumerate(exprs)]}]}
    (tmp_path / "queries.yml").write_text(yaml.safe_dump(rules))
    checked = _promtool("check", "rules", str(tmp_path / "queries.yml"))
    assert checked.returncode == 0, checked.stdout + checked.stderr
