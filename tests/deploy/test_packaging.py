"""What the Containerfile installs works: console scripts resolve, the wheel carries every data file."""

from __future__ import annotations

import importlib
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import pytest

from tests.deploy.helpers import ROOT


def test_console_scripts_point_at_callable_mains() -> None:
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert set(scripts) == {"certq", "certq-api", "certq-worker"}
    for target in scripts.values():
        module_name, _, attribute = target.partition(":")
        assert callable(getattr(importlib.import_module(module_name), attribute)), target


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_the_wheel_contains_every_lua_sql_and_static_file(tmp_path: Path) -> None:
    built = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(tmp_path), str(ROOT)],
        capture_output=True,
        text=True,
        timeout=280,
    )
    assert built.returncode == 0, built.stderr
    wheel = next(tmp_path.glob("certq-*.whl"))
    packaged = set(zipfile.ZipFile(wheel).namelist())
    data = {
        str(p.relative_to(ROOT))
        for p in (ROOT / "certq").rglob("*")
        if p.is_file() and p.suffix not in {".py", ".pyc"} and "__pycache__" not in p.parts
    }
    assert data, "expected Lua scripts, schema.sql and the dashboard's static files"
    assert data - packaged == set(), "package-data in pyproject.toml misses these"
