"""The Kubernetes manifests parse, hang together, and agree with the code (routes, variables, keys)."""

from __future__ import annotations

from typing import Any

import pytest
from starlette.routing import Route

from certq.health import HealthProbes, build_health_app
from certq.queue.keys import QueueKeys
from tests.deploy.helpers import (
    KUBERNETES,
    PASSTHROUGH_ENV,
    exported_metric_names,
    find,
    kubernetes_objects,
    load_yaml_documents,
    metric_names_in,
    settings_aliases,
)

OBJECTS = kubernetes_objects()


def _container(deployment: dict[str, Any]) -> dict[str, Any]:
    containers = deployment["spec"]["template"]["spec"]["containers"]
    assert len(containers) == 1
    container: dict[str, Any] = containers[0]
    return container


def _configmap() -> dict[str, str]:
    data: dict[str, str] = find(OBJECTS, "ConfigMap", "certq-config")["data"]
    return data


def _worker_health_paths() -> set[str]:
    from prometheus_client import CollectorRegistry

    async def never() -> Any:
        raise AssertionError("not called")

    app = build_health_app(
        HealthProbes(describe=dict, health=never, ready=never, queue_counts=never, registry=CollectorRegistry())
    )
    return {route.path for route in app.routes if isinstance(route, Route)}


def test_every_manifest_has_api_version_kind_and_name() -> None:
    assert OBJECTS
    for obj in OBJECTS:
        assert obj.get("apiVersion") and obj.get("kind") and obj["metadata"].get("name"), obj


def test_kustomization_lists_every_manifest_except_the_secret_template() -> None:
    kustomization = load_yaml_documents(KUBERNETES / "kustomization.yaml")[0]
    listed = set(kustomization["resources"])
    on_disk = {p.name for p in KUBERNETES.glob("*.yaml")} - {"kustomization.yaml"}
    assert listed == on_disk - {"secret.template.yaml"}
    assert all((KUBERNETES / name).exists() for name in listed)


@pytest.mark.parametrize("name", ["certq-api", "certq-worker"])
def test_deployment_probes_point_at_live_and_ready_on_a_declared_port(name: str) -> None:
    container = _container(find(OBJECTS, "Deployment", name))
    port_names = {p["name"] for p in container["ports"]}
    assert container["livenessProbe"]["httpGet"]["path"] == "/live"
    assert container["readinessProbe"]["httpGet"]["path"] == "/ready"
    for probe in ("livenessProbe", "readinessProbe", "startupProbe"):
        assert container[probe]["httpGet"]["port"] in port_names
    assert container["resources"]["requests"]["cpu"] and container["resources"]["limits"]["memory"]
    assert container["securityContext"]["allowPrivilegeEscalation"] is False


def test_worker_probe_paths_are_routes_of_the_worker_health_app() -> None:
    container = _container(find(OBJECTS, "Deployment", "certq-worker"))
    paths = _worker_health_paths()
    assert {container["livenessProbe"]["httpGet"]["path"], container["readinessProbe"]["httpGet"]["path"]} <= paths


def test_api_probe_paths_are_routes_of_the_api_app() -> None:
    from certq.api.app import create_app
    from certq.metrics import Metrics
    from certq.settings import load_settings

    app = create_app(load_settings(), metrics=Metrics())
    paths = {route.path for route in app.routes if isinstance(route, Route)}
    container = _container(find(OBJECTS, "Deployment", "certq-api"))
    assert {container["livenessProbe"]["httpGet"]["path"], container["readinessProbe"]["httpGet"]["path"]} <= paths
    assert "/metrics" in paths, "the ServiceMonitor scrapes the API's /metrics too"


def test_container_ports_match_the_configured_ports() -> None:
    config = _configmap()
    worker = _container(find(OBJECTS, "Deployment", "certq-worker"))
    api = _container(find(OBJECTS, "Deployment", "certq-api"))
    assert worker["ports"][0]["containerPort"] == int(config["WORKER_HEALTH_PORT"])
    assert api["ports"][0]["containerPort"] == int(config["API_PORT"])
    assert config["API_HOST"] == "0.0.0.0"


def test_worker_grace_period_outlasts_the_shutdown_grace_and_the_job_timeout_fits_in_it() -> None:
    config = _configmap()
    spec = find(OBJECTS, "Deployment", "certq-worker")["spec"]["template"]["spec"]
    grace = float(config["CERTIFICATION_SHUTDOWN_GRACE"])
    assert spec["terminationGracePeriodSeconds"] > grace
    assert grace * 1000 >= int(config["CERTIFICATION_TIMEOUT"]), "a job started just before SIGTERM must fit"


def test_configmap_and_secret_template_only_use_known_variables() -> None:
    aliases = settings_aliases()
    unknown = set(_configmap()) - aliases
    assert not unknown, f"ConfigMap keys that Settings does not read: {unknown}"
    secret = load_yaml_documents(KUBERNETES / "secret.template.yaml")[0]
    assert set(secret["stringData"]) - aliases - PASSTHROUGH_ENV == set()
    assert {"REDIS_PASSWORD", "DATABASE_URL", "API_TOKENS", "BULL_BOARD_PASSWORD"} <= set(secret["stringData"])


def test_production_configmap_values_pass_settings_validation() -> None:
    from certq.settings import Settings

    values = _configmap() | {"API_TOKENS": "t" * 32, "BULL_BOARD_PASSWORD": "not-the-default"}
    Settings.model_validate(values)


def test_services_select_their_deployments_and_target_declared_ports() -> None:
    for name in ("certq-api", "certq-worker"):
        service = find(OBJECTS, "Service", name)
        deployment = find(OBJECTS, "Deployment", name)
        labels = deployment["spec"]["template"]["metadata"]["labels"]
        assert service["spec"]["selector"].items() <= labels.items()
        assert deployment["spec"]["selector"]["matchLabels"].items() <= labels.items()
        port_names = {p["name"] for p in _container(deployment)["ports"]}
        assert {p["targetPort"] for p in service["spec"]["ports"]} <= port_names


def test_disruption_budgets_select_existing_pods() -> None:
    for name in ("certq-api", "certq-worker"):
        budget = find(OBJECTS, "PodDisruptionBudget", name)
        labels = find(OBJECTS, "Deployment", name)["spec"]["template"]["metadata"]["labels"]
        assert budget["spec"]["selector"]["matchLabels"].items() <= labels.items()


def test_scaled_object_counts_waiting_and_active_jobs_and_reads_the_real_wait_list() -> None:
    scaled = find(OBJECTS, "ScaledObject", "certq-worker")
    assert scaled["spec"]["scaleTargetRef"]["name"] == "certq-worker"
    triggers = {t["type"]: t for t in scaled["spec"]["triggers"]}
    query = triggers["prometheus"]["metadata"]["query"]
    assert "waiting" in query and "active" in query
    assert metric_names_in(query) <= exported_metric_names()
    config = _configmap()
    assert int(triggers["prometheus"]["metadata"]["threshold"]) == int(config["CERTIFICATION_CONCURRENCY"])
    wait_list = QueueKeys(config["BULL_QUEUE_PREFIX"], config["CERTIFICATION_QUEUE_NAME"]).wait
    assert triggers["redis"]["metadata"]["listName"] == wait_list
    assert triggers["redis"]["metadata"]["address"] == f"{config['REDIS_HOST']}:{config['REDIS_PORT']}"
    auth = find(OBJECTS, "TriggerAuthentication", triggers["redis"]["authenticationRef"]["name"])
    assert auth["spec"]["secretTargetRef"][0]["key"] == "REDIS_PASSWORD"
    scale_down = scaled["spec"]["advanced"]["horizontalPodAutoscalerConfig"]["behavior"]["scaleDown"]
    assert scale_down["stabilizationWindowSeconds"] >= 300


def test_service_monitor_scrapes_ports_the_services_expose() -> None:
    monitor = find(OBJECTS, "ServiceMonitor", "certq")
    service_ports = {
        p["name"] for name in ("certq-api", "certq-worker") for p in find(OBJECTS, "Service", name)["spec"]["ports"]
    }
    for endpoint in monitor["spec"]["endpoints"]:
        assert endpoint["port"] in service_ports
        assert endpoint["path"] == "/metrics"
    assert (
        monitor["spec"]["selector"]["matchLabels"].items()
        <= find(OBJECTS, "Service", "certq-worker")["metadata"]["labels"].items()
    )


def test_alert_rules_cover_the_required_conditions_with_real_metric_names() -> None:
    rule = find(OBJECTS, "PrometheusRule", "certq")
    rules = [r for group in rule["spec"]["groups"] for r in group["rules"]]
    names = {r["alert"] for r in rules}
    assert {"CertqFailedJobsRising", "CertqQueueBackingUp", "CertqNoWorkerHeartbeat", "CertqStalledJobs"} <= names
    known = exported_metric_names()
    for r in rules:
        used = metric_names_in(r["expr"])
        assert used, f"{r['alert']} uses no certq metric"
        assert used <= known, f"{r['alert']} uses unknown metrics {used - known}"
        assert r["labels"]["severity"] in {"warning", "critical"}
        assert r["annotations"]["summary"] and r["annotations"]["description"]


def test_images_run_as_non_root_everywhere() -> None:
    for obj in OBJECTS:
        if obj["kind"] in {"Deployment", "Job"}:
            pod = obj["spec"]["template"]["spec"]
            assert pod["securityContext"]["runAsNonRoot"] is True
            assert pod["securityContext"]["runAsUser"] != 0


def test_kustomize_renders_the_manifests_with_the_release_image() -> None:
    import shutil
    import subprocess

    import yaml

    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.skip("kubectl is not installed")
    rendered = subprocess.run([kubectl, "kustomize", str(KUBERNETES)], capture_output=True, text=True, timeout=60)
    assert rendered.returncode == 0, rendered.stderr
    objects = [doc for doc in yaml.safe_load_all(rendered.stdout) if doc]
    assert len(objects) == len(OBJECTS) - 1  # everything but the Secret template
    images = {
        c["image"]
        for o in objects
        if o["kind"] in {"Deployment", "Job"}
        for c in o["spec"]["template"]["spec"]["containers"]
    }
    assert len(images) == 1 and next(iter(images)).startswith("ghcr.io/")
    assert all(o["metadata"]["labels"]["app.kubernetes.io/part-of"] == "certq" for o in objects)


def test_api_pods_migrate_and_worker_pods_wait_for_the_schema_with_real_commands() -> None:
    from certq.cli import build_parser

    commands = next(a for a in build_parser()._actions if a.dest == "command").choices
    assert commands is not None
    api_init = find(OBJECTS, "Deployment", "certq-api")["spec"]["template"]["spec"]["initContainers"]
    worker_init = find(OBJECTS, "Deployment", "certq-worker")["spec"]["template"]["spec"]["initContainers"]
    assert api_init[0]["command"] == ["certq", "migrate"]
    assert worker_init[0]["command"][:2] == ["certq", "schema-wait"]
    assert {"migrate", "schema-wait"} <= set(commands)
    assert not [o for o in OBJECTS if o["kind"] == "Job"], "a Job's template is immutable: re-applying it fails"
