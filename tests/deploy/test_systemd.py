"""The systemd units run real console scripts, drain like the containers do, and never as root."""

from __future__ import annotations

import configparser
import shlex
import tomllib

from certq.cli import build_parser
from certq.settings import Settings
from tests.deploy.helpers import ROOT

UNITS = ROOT / "deploy" / "systemd"


def _unit(name: str) -> configparser.ConfigParser:
    parser = configparser.ConfigParser(strict=False, interpolation=None)
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read_string((UNITS / name).read_text())
    return parser


def test_units_start_installed_console_scripts_as_an_unprivileged_user() -> None:
    scripts = set(tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"])
    commands = next(a for a in build_parser()._actions if a.dest == "command").choices
    assert commands is not None
    for path in sorted(UNITS.glob("*.service")):
        service = _unit(path.name)["Service"]
        argv = shlex.split(service["ExecStart"])
        assert argv[0].rsplit("/", 1)[-1] in scripts, path.name
        if argv[0].endswith("/certq"):
            assert argv[1] in commands
        assert service["User"] not in {"root", "0"}
        assert service["EnvironmentFile"] == "/etc/certq/certq.env"


def test_worker_unit_drains_within_its_stop_timeout_on_its_own_port() -> None:
    service = _unit("certq-worker@.service")["Service"]
    assert service["KillSignal"] == "SIGTERM"
    default_grace = Settings.model_fields["shutdown_grace_s"].default
    assert int(service["TimeoutStopSec"]) > default_grace
    assert shlex.split(service["ExecStart"])[1:] == ["--health-port", "%i"]


def test_api_and_workers_wait_for_the_migration() -> None:
    for name in ("certq-api.service", "certq-worker@.service"):
        unit = _unit(name)["Unit"]
        assert "certq-migrate.service" in unit["After"] and unit["Requires"] == "certq-migrate.service"
    assert _unit("certq-migrate.service")["Service"]["Type"] == "oneshot"
