"""compose.yaml, the Containerfile and the monitoring files agree with each other and with the code."""

from __future__ import annotations

import json
import re
import subprocess
import tomllib
from pathlib import Path
from typing import Any

import yaml

from certq.cli import build_parser
from tests.deploy.helpers import (
    PASSTHROUGH_ENV,
    ROOT,
    exported_metric_names,
    load_yaml_documents,
    metric_names_in,
    settings_aliases,
)

COMPOSE: dict[str, Any] = yaml.safe_load((ROOT / "compose.yaml").read_text())
SERVICES: dict[str, Any] = COMPOSE["services"]
CERTQ_SERVICES = ("migrate", "api", "worker-1", "worker-2")


def _command(service: str) -> list[str]:
    command = SERVICES[service]["command"]
    return command if isinstance(command, list) else command.split()


def _flag(service: str, flag: str) -> str:
    command = _command(service)
    return command[command.index(flag) + 1]


def test_compose_has_every_service_of_the_stack() -> None:
    assert set(SERVICES) >= {"redis", "postgres", "migrate", "api", "worker-1", "worker-2", "prometheus", "grafana"}
    assert SERVICES["redis"]["image"].startswith("redis:7")
    assert SERVICES["postgres"]["image"].startswith("postgres:15")


def test_redis_persists_with_aof_and_requires_a_password() -> None:
    command = " ".join(_command("redis"))
    assert "--appendonly yes" in command
    assert "--maxmemory-policy noeviction" in command
    assert SERVICES["redis"]["environment"]["REDIS_PASSWORD"].startswith("${REDIS_PASSWORD:?")
    assert SERVICES["redis"]["entrypoint"] == ["/bin/sh", "/usr/local/etc/certq/redis-start.sh"]
    assert "./deploy/redis/start.sh:/usr/local/etc/certq/redis-start.sh:ro" in SERVICES["redis"]["volumes"]


def test_redis_password_is_on_no_command_line() -> None:
    redis = SERVICES["redis"]
    shown = json.dumps([redis["entrypoint"], redis["command"], redis["healthcheck"]["test"]])
    assert "REDIS_PASSWORD}" not in shown and "requirepass" not in shown
    assert " -a " not in shown and "REDISCLI_AUTH=" in shown


def test_redis_start_script_passes_any_password_as_configuration_on_stdin(tmp_path: Path) -> None:
    """deploy/redis/start.sh hands `requirepass "<escaped>"` to the image's entrypoint on stdin, the rest as
    arguments; redis.conf's double-quoted strings take backslash escapes (sdssplitargs)."""
    fake = tmp_path / "docker-entrypoint.sh"
    fake.write_text('#!/bin/sh\nprintf "%s\\n" "$@" > "$ARGS_OUT"\ncat > "$STDIN_OUT"\n')
    fake.chmod(0o755)
    password = "p@/:#?%$x \"quoted\" back\\slash 'single'"
    env = {
        "PATH": f"{tmp_path}:/usr/bin:/bin",
        "REDIS_PASSWORD": password,
        "ARGS_OUT": str(tmp_path / "args"),
        "STDIN_OUT": str(tmp_path / "stdin"),
    }
    script = ROOT / "deploy" / "redis" / "start.sh"
    subprocess.run(["/bin/sh", str(script), "--appendonly", "yes"], env=env, check=True, timeout=10)
    assert (tmp_path / "args").read_text().split() == ["redis-server", "-", "--appendonly", "yes"]
    line = (tmp_path / "stdin").read_text().strip()
    assert line.startswith('requirepass "') and line.endswith('"')
    assert _unescape_redis_conf(line.removeprefix("requirepass ")) == password


def _unescape_redis_conf(quoted: str) -> str:
    """Redis's reading of a double-quoted configuration argument: `\\c` is `c` (n, r, t, b, a aside)."""
    assert quoted[0] == quoted[-1] == '"'
    body, out, i = quoted[1:-1], [], 0
    while i < len(body):
        if body[i] == "\\":
            i += 1
            out.append({"n": "\n", "r": "\r", "t": "\t"}.get(body[i], body[i]))
        else:
            assert body[i] != '"', "an unescaped quote ends the string early"
            out.append(body[i])
        i += 1
    return "".join(out)


def test_redis_start_script_refuses_to_start_without_a_password() -> None:
    script = ROOT / "deploy" / "redis" / "start.sh"
    done = subprocess.run(["/bin/sh", str(script)], env={"PATH": "/usr/bin:/bin"}, capture_output=True, timeout=10)
    assert done.returncode != 0 and b"REDIS_PASSWORD" in done.stderr


def test_the_certq_image_is_built_once_and_run_by_every_certq_service() -> None:
    built = [name for name, service in SERVICES.items() if "build" in service]
    assert built == ["migrate"]
    assert {SERVICES[name]["image"] for name in CERTQ_SERVICES} == {"certq:local"}
    for name in ("api", "worker-1", "worker-2"):
        assert SERVICES[name]["pull_policy"] == "never"  # never looked for in a registry: migrate builds it


def test_the_build_takes_a_private_index_and_a_ca_bundle() -> None:
    build = SERVICES["migrate"]["build"]
    assert set(build["args"]) == {"PIP_INDEX_URL", "PIP_EXTRA_INDEX_URL", "PIP_TRUSTED_HOST"}
    assert build["secrets"] == ["pip_ca"]
    assert COMPOSE["secrets"]["pip_ca"]["file"] == "${PIP_CA_BUNDLE:-/dev/null}"
    text = (ROOT / "Containerfile").read_text()
    build_stage = text[text.index("AS build") : text.index("AS runtime")]
    for arg in build["args"]:
        assert f"ARG {arg}" in build_stage
    pip_runs = [run for run in build_stage.split("\nRUN ")[1:] if "pip install" in run]
    assert pip_runs and all("--mount=type=secret,id=pip_ca" in run and "PIP_CERT=" in run for run in pip_runs)
    assert "ARG PIP" not in text[text.index("AS runtime") :], "the runtime image must not see the build's index"


def test_containerfile_assumes_only_python3_and_adds_its_user_without_a_warning() -> None:
    text = (ROOT / "Containerfile").read_text()
    assert "python3 -m venv" in text and "RUN python -m" not in text
    useradd = next(line for line in text.splitlines() if "useradd" in line)
    assert "--system" not in useradd and "--uid 10001" in useradd  # a --system uid above 999 warns


def test_every_compose_command_needs_no_grafana_password_outside_the_monitoring_profile() -> None:
    secrets = {"REDIS_PASSWORD": "r", "POSTGRES_PASSWORD": "p", "API_TOKENS": "t", "BULL_BOARD_PASSWORD": "b"}
    # Compose interpolates every service, in every profile, for any command: none may require the password.
    _interpolate(yaml.safe_dump(COMPOSE), secrets)
    grafana = SERVICES["grafana"]
    assert grafana["environment"]["GF_SECURITY_ADMIN_PASSWORD"] == "${GRAFANA_ADMIN_PASSWORD:-}"
    assert "set GRAFANA_ADMIN_PASSWORD" in grafana["entrypoint"][-1]  # Grafana itself refuses to start without it


def test_compose_v2_is_named_as_the_requirement() -> None:
    assert "Docker Compose v2" in (ROOT / "compose.yaml").read_text()
    operations = (ROOT / "docs" / "operations.md").read_text()
    assert "Compose v2" in operations and "podman-compose" in operations


def test_migrate_runs_once_before_the_api_and_workers() -> None:
    assert _command("migrate")[-1] == "migrate"
    assert SERVICES["migrate"]["restart"] == "no"
    for service in ("api", "worker-1", "worker-2"):
        assert SERVICES[service]["depends_on"]["migrate"]["condition"] == "service_completed_successfully"


def test_workers_listen_on_3002_and_3003_consistently() -> None:
    for service, port in (("worker-1", "3002"), ("worker-2", "3003")):
        assert _flag(service, "--health-port") == port
        assert SERVICES[service]["environment"]["WORKER_HEALTH_PORT"] == port
        assert SERVICES[service]["ports"] == [f"{port}:{port}"]
        grace = re.search(r":-(\d+)", SERVICES[service]["environment"]["CERTIFICATION_SHUTDOWN_GRACE"])
        assert grace is not None
        assert int(SERVICES[service]["stop_grace_period"].rstrip("s")) > int(grace.group(1))
    assert SERVICES["api"]["ports"] == ["3001:3001"]
    assert SERVICES["api"]["environment"]["API_PORT"] == "3001"


def test_certq_services_only_set_variables_certq_reads() -> None:
    aliases = settings_aliases()
    for service in CERTQ_SERVICES:
        unknown = set(SERVICES[service]["environment"]) - aliases - PASSTHROUGH_ENV
        assert not unknown, f"{service} sets variables Settings does not read: {unknown}"


def test_secrets_come_from_the_environment_never_from_the_file() -> None:
    environment = SERVICES["api"]["environment"]
    for secret in ("REDIS_PASSWORD", "API_TOKENS", "BULL_BOARD_PASSWORD"):
        assert environment[secret].startswith("${") and ":?" in environment[secret]
    assert environment["CERTQ_ENV"] == "production"


def test_monitoring_profile_scrapes_both_workers_and_mounts_the_dashboard() -> None:
    for service in ("prometheus", "grafana"):
        assert SERVICES[service]["profiles"] == ["monitoring"]
    prometheus = yaml.safe_load((ROOT / "deploy/prometheus/prometheus.yml").read_text())
    targets = {t for job in prometheus["scrape_configs"] for c in job["static_configs"] for t in c["targets"]}
    assert {"worker-1:3002", "worker-2:3003", "api:3001"} <= targets
    for volume in SERVICES["prometheus"]["volumes"] + SERVICES["grafana"]["volumes"]:
        source = volume.split(":")[0]
        if source.startswith("./"):
            assert (ROOT / source).exists(), source


def test_compose_alerts_equal_the_kubernetes_rules() -> None:
    alerts = yaml.safe_load((ROOT / "deploy/prometheus/alerts.yml").read_text())
    rule = load_yaml_documents(ROOT / "deploy/kubernetes/prometheusrule.yaml")[0]
    assert alerts["groups"] == rule["spec"]["groups"]


def test_dashboard_queries_use_real_metric_names() -> None:
    dashboard = json.loads((ROOT / "deploy/grafana/certq-dashboard.json").read_text())
    known = exported_metric_names()
    exprs = [t["expr"] for panel in dashboard["panels"] for t in panel.get("targets", [])]
    assert len(exprs) >= 10
    for expr in exprs:
        assert metric_names_in(expr) <= known, expr
    assert dashboard["uid"] and len({p["id"] for p in dashboard["panels"]}) == len(dashboard["panels"])


def test_containerfile_is_multi_stage_non_root_with_a_healthcheck_and_no_secrets() -> None:
    text = (ROOT / "Containerfile").read_text()
    instructions = [line.strip() for line in text.splitlines() if line.strip() and not line.startswith("#")]
    assert sum(line.startswith("FROM ") for line in instructions) >= 2
    user = [line for line in instructions if line.startswith("USER ")]
    assert user and user[-1].split()[1].split(":")[0] not in {"0", "root"}
    healthcheck = next(line for line in instructions if line.startswith("HEALTHCHECK "))
    command = json.loads(healthcheck[healthcheck.index("CMD") + 3 :].strip())
    assert command[0] == "certq"
    assert command[1] in _cli_commands()
    for line in instructions:
        if line.startswith(("ENV ", "ARG ")):
            assert not re.search(r"(PASSWORD|TOKEN|SECRET|API_KEY)\w*=", line), line


def test_every_command_the_deployment_files_run_exists() -> None:
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert set(scripts) == {"certq", "certq-api", "certq-worker"}
    for service in CERTQ_SERVICES:
        command = _command(service)
        assert command[0] in scripts
        if command[0] == "certq":
            assert command[1] in _cli_commands()


def _cli_commands() -> set[str]:
    parser = build_parser()
    actions = [a for a in parser._actions if a.dest == "command"]
    return set(actions[0].choices) if actions else set()  # type: ignore[arg-type]


_INTERPOLATION = re.compile(r"\$\{(\w+)(?::([?-])([^}]*))?\}")


def _interpolate(value: str, env: dict[str, str]) -> str:
    """compose's `${VAR}`, `${VAR:-default}` and `${VAR:?message}` (the forms compose.yaml uses)."""

    def replace(match: re.Match[str]) -> str:
        name, kind, rest = match.groups()
        if env.get(name):
            return env[name]
        assert kind != "?", f"compose would refuse to start: {rest}"
        return rest if kind == "-" else ""

    return _INTERPOLATION.sub(replace, value)


def test_compose_environment_passes_production_validation_and_the_flags_parse() -> None:
    from certq.settings import Settings
    from certq.worker.cli import build_parser as worker_parser

    t1, t2 = "t1" + "x" * 30, "t2" + "y" * 30
    secrets = {
        "REDIS_PASSWORD": "r",
        "POSTGRES_PASSWORD": "p",
        "API_TOKENS": f"{t1},{t2}",
        "BULL_BOARD_PASSWORD": "b" * 16,
    }
    for service in CERTQ_SERVICES:
        env = {k: _interpolate(str(v), secrets) for k, v in SERVICES[service]["environment"].items()}
        settings = Settings.model_validate(env)
        assert settings.env == "production" and settings.tokens == [t1, t2]
        assert settings.redis_dsn == "redis://:r@redis:6379/0"
        assert settings.database_url == "postgresql://certq:p@postgres:5432/certq"
        command = _command(service)
        if command[0] == "certq-worker":
            args = worker_parser().parse_args(command[1:])
            assert args.health_port == settings.worker_health_port


def test_compose_passwords_may_hold_any_character_a_url_cannot() -> None:
    from urllib.parse import unquote, urlsplit

    from certq.settings import Settings

    password = "p@/:#?%x y"
    secrets = {
        "REDIS_PASSWORD": password,
        "POSTGRES_PASSWORD": password,
        "API_TOKENS": "t" * 32,
        "BULL_BOARD_PASSWORD": "b" * 16,
    }
    env = {k: _interpolate(str(v), secrets) for k, v in SERVICES["api"]["environment"].items()}
    settings = Settings.model_validate(env)
    for url, host in ((settings.database_url, "postgres"), (settings.redis_dsn, "redis")):
        parts = urlsplit(url)
        assert parts.hostname == host and unquote(parts.password or "") == password


def test_compose_refuses_to_start_without_its_secrets() -> None:
    import pytest

    with pytest.raises(AssertionError, match="set REDIS_PASSWORD"):
        _interpolate(SERVICES["api"]["environment"]["REDIS_PASSWORD"], {})
