"""What the deployment tests cross-check files against: Settings aliases, metric names, health routes."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml
from prometheus_client import CollectorRegistry

from certq.metrics import Metrics
from certq.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
KUBERNETES = ROOT / "deploy" / "kubernetes"

# Variables read by libraries or by the model endpoints' credentials, not by certq's Settings.
PASSTHROUGH_ENV = {
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AWS_REGION",
    "AWS_DEFAULT_REGION",
}

_METRIC = re.compile(r"\bcertq_[a-z0-9_]+\b")


def settings_aliases() -> set[str]:
    return {field.alias for field in Settings.model_fields.values() if field.alias}


def load_yaml_documents(path: Path) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc is not None]


def kubernetes_objects() -> list[dict[str, Any]]:
    objects: list[dict[str, Any]] = []
    for path in sorted(p for p in KUBERNETES.glob("*.yaml") if p.name != "kustomization.yaml"):
        objects += load_yaml_documents(path)
    return objects


def find(objects: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    matches = [o for o in objects if o.get("kind") == kind and o["metadata"]["name"] == name]
    assert len(matches) == 1, f"expected one {kind} {name}, found {len(matches)}"
    return matches[0]


def exported_metric_names() -> set[str]:
    """Every sample name the workers' and the API's metrics can export (counters with _total, histograms' series)."""
    from certq.api.services import ApiMetrics

    registry = CollectorRegistry()
    ApiMetrics(Metrics(registry))
    names: set[str] = set()
    for family in registry.collect():
        if family.type == "counter":
            names |= {f"{family.name}_total", f"{family.name}_created"}
        elif family.type == "histogram":
            names |= {f"{family.name}_bucket", f"{family.name}_sum", f"{family.name}_count", f"{family.name}_created"}
        else:
            names.add(family.name)
    return names


def metric_names_in(expr: str) -> set[str]:
    return set(_METRIC.findall(expr))
