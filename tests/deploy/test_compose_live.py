"""compose.yaml and the Containerfile, really run: a private Docker engine, Compose v2, `up -d --build`, a
certification through the API reaching CERTIFIED, the dashboard behind its password, the monitoring profile's
Prometheus scraping every certq target with the alert rules loaded, then `down -v` and nothing left behind.

The public base images are stand-ins built from Debian's packages (tests/deploy/standins/, cached under
~/.cache/certq/); Grafana has no Debian package, so the monitoring profile runs without it here. The stack
publishes compose.yaml's own ports (3001-3003, 9090), so the test skips when one is taken.
"""

from __future__ import annotations

import json
import os
import secrets
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from tests.deploy.engine import Engine, EngineError, docker_engine, load_standin_images, port_taken
from tests.deploy.helpers import ROOT

pytestmark = [pytest.mark.slow, pytest.mark.timeout(1500)]

PORTS = (3001, 3002, 3003, 9090)
HEALTH_PORTS = (3001, 3002, 3003)
SPECIALS = "@/:#?%"
"""Characters that break a password written into a URL: every password here holds them all..."""
QUOTING = '"\\$ '
"""...and these, which break one written into a shell command line, a redis.conf line or an unquoted .env value."""
UP_TIMEOUT_S = 600
READY_TIMEOUT_S = 120
CERTIFY_TIMEOUT_S = 180
SCRAPE_TIMEOUT_S = 90
DOWN_TIMEOUT_S = 120
STUB_OVERLAY = Path(__file__).resolve().parent / "compose.model-stub.yaml"
CA_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")


def _skip_reason() -> str | None:
    if os.geteuid() != 0:
        return "starting a Docker engine needs root (dockerd, bridge interfaces, iptables)"
    taken = [port for port in PORTS if port_taken(port)]
    if taken:
        return f"compose.yaml publishes ports {PORTS}; taken here: {taken}"
    return None


def _password(label: str) -> str:
    return f"{label}{SPECIALS}{QUOTING}{secrets.token_urlsafe(12)}"


@pytest.fixture
def secrets_env() -> dict[str, str]:
    """Random secrets for .env; GRAFANA_ADMIN_PASSWORD left out (the monitoring profile runs without Grafana)."""
    return {
        "REDIS_PASSWORD": _password("r"),
        "POSTGRES_PASSWORD": _password("p"),
        "API_TOKENS": secrets.token_urlsafe(32),
        "BULL_BOARD_USERNAME": "admin",
        "BULL_BOARD_PASSWORD": _password("b"),
        # The stub's key may be sent to the stub only; production egress allows it by name.
        "MODEL_CREDENTIALS": "OPENAI_API_KEY@model-stub:8000",
        "MODEL_EGRESS_ALLOW": "public,model-stub",
        "OPENAI_API_KEY": secrets.token_urlsafe(16),
    }


def write_env_file(path: Path, values: dict[str, str]) -> None:
    """A compose .env as deploy/compose.env.example says to write it: single quotes keep `$`, `#` literal."""
    assert all("'" not in value and "\n" not in value for value in values.values())
    path.write_text("".join(f"{key}='{value}'\n" for key, value in values.items()))


class Stack:
    """`docker compose` for one project of compose.yaml plus the model stub, against the private engine."""

    def __init__(self, engine: Engine, env_file: Path) -> None:
        self.engine = engine
        self.name = f"certq-live-{secrets.token_hex(3)}"
        self.base = [
            "compose",
            "--project-name",
            self.name,
            "--project-directory",
            str(ROOT),
            "--env-file",
            str(env_file),
            "-f",
            str(ROOT / "compose.yaml"),
            "-f",
            str(STUB_OVERLAY),
        ]

    def compose(self, *args: str, timeout: float, profile: bool = False) -> str:
        profiles = ["--profile", "monitoring"] if profile else []
        return self.engine.docker(*self.base, *profiles, *args, timeout=timeout)

    def container(self, service: str) -> dict[str, Any]:
        ids = self.compose("ps", "-aq", service, timeout=30).split()
        assert len(ids) == 1, f"{service}: {ids}"
        inspected: list[dict[str, Any]] = json.loads(self.engine.docker("inspect", ids[0], timeout=30))
        return inspected[0]

    def logs(self) -> str:
        try:
            return self.compose("logs", "--no-color", "--tail", "40", timeout=60, profile=True)
        except EngineError as exc:
            return str(exc)

    def leftovers(self) -> dict[str, list[str]]:
        label = f"label=com.docker.compose.project={self.name}"
        return {
            kind: self.engine.docker(*command, "--filter", label, timeout=30).split()
            for kind, command in {
                "containers": ("ps", "-aq"),
                "volumes": ("volume", "ls", "-q"),
                "networks": ("network", "ls", "-q"),
            }.items()
        }


def wait_until(what: str, timeout: float, probe: Callable[[], Any]) -> Any:
    """Call `probe` until it returns something truthy (exceptions count as not yet); fail after `timeout`."""
    deadline = time.monotonic() + timeout
    last: object = None
    while time.monotonic() < deadline:
        try:
            result = probe()
        except (httpx.HTTPError, KeyError, ValueError) as exc:
            result, last = None, exc
        if result:
            return result
        time.sleep(1)
    pytest.fail(f"{what}: not within {timeout:.0f} s (last: {last!r})")


@pytest.fixture
def engine() -> Iterator[Engine]:
    reason = _skip_reason()
    if reason:
        pytest.skip(reason)
    with docker_engine() as running:
        yield running
    assert not running.host.differences(), "dockerd left something on the host"
    assert not running.root.exists()


def test_compose_stack_builds_runs_certifies_and_is_monitored_then_leaves_nothing_behind(
    engine: Engine, secrets_env: dict[str, str], tmp_path: Path
) -> None:
    started = time.monotonic()
    how = load_standin_images(engine)
    images_s = time.monotonic() - started

    env = dict(secrets_env)
    if CA_BUNDLE.exists():  # a TLS-intercepting proxy between this machine and PyPI needs its CA in the build
        env["PIP_CA_BUNDLE"] = str(CA_BUNDLE)
    env_file = tmp_path / ".env"
    write_env_file(env_file, env)
    stack = Stack(engine, env_file)
    up_started = time.monotonic()
    try:
        stack.compose("up", "-d", "--build", timeout=UP_TIMEOUT_S)
        _check_health_and_readiness()
        certified_s = _check_certification(env["API_TOKENS"])
        _check_dashboard(env["BULL_BOARD_USERNAME"], env["BULL_BOARD_PASSWORD"])
        _check_no_secret_on_a_command_line(stack, env)
        _check_container_env_example(engine, stack, env)
        stack.compose("up", "-d", "--no-deps", "prometheus", timeout=120, profile=True)
        _check_prometheus_scrapes_every_target()
        up_s = time.monotonic() - up_started
    except BaseException:
        print(stack.logs())
        raise
    finally:
        down_started = time.monotonic()
        stack.compose("down", "-v", "--remove-orphans", timeout=DOWN_TIMEOUT_S, profile=True)
        down_s = time.monotonic() - down_started
    assert stack.leftovers() == {"containers": [], "volumes": [], "networks": []}
    print(
        f"base images {how} in {images_s:.0f} s; up, certified in {certified_s:.0f} s, all checks "
        f"{up_s:.0f} s; down -v {down_s:.0f} s"
    )


def _answers(url: str) -> Callable[[], bool]:
    return lambda: httpx.get(url, timeout=5).is_success


def _check_health_and_readiness() -> None:
    for port in HEALTH_PORTS:
        for route in ("health", "ready"):
            url = f"http://127.0.0.1:{port}/{route}"
            wait_until(f"{url} answering 200", READY_TIMEOUT_S, _answers(url))
    worker = httpx.get("http://127.0.0.1:3002/health", timeout=5).json()
    assert worker["status"] == "healthy" and worker["worker"]["queueName"] == "model-certification"


def _check_certification(token: str) -> float:
    started = time.monotonic()
    api = httpx.Client(base_url="http://127.0.0.1:3001", headers={"Authorization": f"Bearer {token}"}, timeout=10)
    with api:
        model = api.post(
            "/api/models",
            json={
                "name": "compose-stub",
                "provider": "openai",
                "apiModelId": "stub-model",
                "baseUrl": "http://model-stub:8000/v1",
                "apiKeyEnv": "OPENAI_API_KEY",
                "regions": ["local"],
                "isActive": True,
            },
        )
        assert model.status_code == 201, model.text
        queued = api.post(
            "/api/certification-queue/certify-model", json={"modelId": model.json()["id"], "region": "local"}
        )
        assert queued.status_code == 201, queued.text
        job_url = f"/api/certification-queue/jobs/{queued.json()['jobId']}"

        def finished() -> dict[str, Any] | None:
            job: dict[str, Any] = api.get(job_url).json()
            return job if job["status"] in ("COMPLETED", "FAILED", "CANCELLED") else None

        job = wait_until("the certification finishing", CERTIFY_TIMEOUT_S, finished)
    [certification] = job["certifications"]
    assert certification["status"] == "CERTIFIED", certification
    assert certification["passed"] is True and certification["apiModelId"] == "stub-model"
    return time.monotonic() - started


def _check_dashboard(username: str, password: str) -> None:
    board = "http://127.0.0.1:3001/admin/queues/"
    refused = httpx.get(board, timeout=10)
    assert refused.status_code == 401 and refused.headers["WWW-Authenticate"].lower().startswith("basic")
    assert httpx.get(board, auth=("admin", "wrong-password"), timeout=10).status_code == 401
    assert httpx.get(board, auth=(username, password), timeout=10, follow_redirects=True).status_code == 200


def _check_no_secret_on_a_command_line(stack: Stack, env: dict[str, str]) -> None:
    """Issue 18's point 7: Redis's password is in no Args, Cmd, Entrypoint or health check `docker inspect` shows."""
    redis = stack.container("redis")
    config = redis["Config"]
    shown = json.dumps([redis["Args"], config["Cmd"], config["Entrypoint"], config["Healthcheck"]])
    assert env["REDIS_PASSWORD"] not in shown
    assert redis["State"]["Health"]["Status"] == "healthy"  # the health check authenticates without -a
    for service in ("api", "worker-1", "worker-2", "migrate"):
        container = stack.container(service)
        assert container["Image"] == stack.container("api")["Image"], "one image for every certq service"
        for secret in ("REDIS_PASSWORD", "POSTGRES_PASSWORD"):
            assert env[secret] not in json.dumps(container["Config"]["Cmd"])


def _check_container_env_example(engine: Engine, stack: Stack, env: dict[str, str]) -> None:
    """The Containerfile's `docker run --env-file certq.env` example, with deploy/certq.env.example's variables
    pointed at this stack: `certq doctor` finds Redis, PostgreSQL, the workers and the schema."""
    values = {
        "REDIS_HOST": "redis",
        "REDIS_PASSWORD": env["REDIS_PASSWORD"],
        "DATABASE_URL": "postgresql://certq@postgres:5432/certq",
        "DATABASE_PASSWORD": env["POSTGRES_PASSWORD"],
        "API_TOKENS": env["API_TOKENS"],
        "BULL_BOARD_PASSWORD": env["BULL_BOARD_PASSWORD"],
    }
    lines = []
    for line in (ROOT / "deploy" / "certq.env.example").read_text().splitlines():
        key = line.partition("=")[0]
        lines.append(f"{key}={values.pop(key)}" if key in values else line)
    assert not values, f"deploy/certq.env.example lacks {sorted(values)}"
    env_file = Path(engine.root) / "certq.env"
    env_file.write_text("\n".join(lines) + "\n")
    network = f"{stack.name}_default"
    report = engine.docker(
        "run", "--rm", "--env-file", str(env_file), "--network", network, "certq:local", "certq", "doctor", timeout=60
    )
    assert "everything certq needs is in place" in report, report


def _check_prometheus_scrapes_every_target() -> None:
    prometheus = yaml.safe_load((ROOT / "deploy/prometheus/prometheus.yml").read_text())
    targets = {t for job in prometheus["scrape_configs"] for c in job["static_configs"] for t in c["targets"]}

    def all_up() -> bool:
        answer = httpx.get("http://127.0.0.1:9090/api/v1/query", params={"query": "up"}, timeout=5).json()
        up = {r["metric"]["instance"]: r["value"][1] for r in answer["data"]["result"]}
        return set(up) == targets and set(up.values()) == {"1"}

    wait_until(f"Prometheus reporting up=1 for {sorted(targets)}", SCRAPE_TIMEOUT_S, all_up)
    shipped = yaml.safe_load((ROOT / "deploy/prometheus/alerts.yml").read_text())
    wanted = {rule.get("alert") or rule["record"] for group in shipped["groups"] for rule in group["rules"]}
    rules = httpx.get("http://127.0.0.1:9090/api/v1/rules", timeout=5).json()["data"]["groups"]
    loaded = {rule["name"] for group in rules for rule in group["rules"] if rule["health"] != "err"}
    assert loaded == wanted
