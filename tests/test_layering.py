"""Imports point one way: api/worker -> store, certification, queue -> stdlib and libraries."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "certq"

# Every unit of the package (a subpackage or a top-level module) and the certq units it may import: an
# allow-list, so a new import across layers, or a new unit, fails here until it is placed on purpose.
# The core below knows nothing above it: queue and the leaf modules import no certq code; certification
# only the egress rules and the error categories; the store only those categories and the pure cron and
# drift rules.
ALLOWED: dict[str, frozenset[str]] = {
    name: frozenset(allowed)
    for name, allowed in {
        "__init__": (),
        "__main__": ("cli",),
        "bootstrap": (),
        "categories": (),
        "credentials": (),
        "cron": (),
        "drift": (),
        "durations": (),
        "embedded": (),
        "http_limits": (),
        "login_throttle": (),
        "loops": (),
        "problems": (),
        "queue": (),
        "web_input": ("problems",),
        "egress": ("credentials",),
        "settings": ("credentials", "durations", "egress"),
        "connections": ("settings",),
        "logs": ("settings",),
        "metrics": ("drift",),
        "health": ("http_limits", "metrics", "problems"),
        "certification": ("categories", "egress"),
        "store": ("categories", "cron", "drift"),
        "jobs": ("queue", "settings", "store"),
        "reconcile": ("jobs", "queue", "settings", "store"),
        "dashboard": ("jobs", "login_throttle", "problems", "queue", "settings", "store", "web_input"),
        "chaos": ("connections", "embedded", "jobs", "queue", "reconcile", "settings", "store"),
        "worker": (
            "certification",
            "connections",
            "credentials",
            "health",
            "jobs",
            "logs",
            "loops",
            "metrics",
            "queue",
            "reconcile",
            "settings",
            "store",
        ),
        "api": (
            "certification",
            "connections",
            "credentials",
            "cron",
            "dashboard",
            "egress",
            "health",
            "http_limits",
            "jobs",
            "login_throttle",
            "logs",
            "metrics",
            "problems",
            "queue",
            "settings",
            "store",
            "web_input",
        ),
        "cli": (
            "certification",
            "chaos",
            "connections",
            "credentials",
            "cron",
            "durations",
            "embedded",
            "jobs",
            "loops",
            "queue",
            "reconcile",
            "settings",
            "store",
        ),
    }.items()
}

# Libraries a unit must not import, whatever certq code it may use.
FORBIDDEN_LIBRARIES: dict[str, tuple[str, ...]] = {
    "queue": ("asyncpg", "starlette", "uvicorn", "httpx"),
    "certification": ("redis", "asyncpg", "starlette", "uvicorn"),
    "store": ("redis", "starlette", "httpx"),
    "settings": ("redis", "asyncpg", "starlette", "httpx"),
    "cron": ("pydantic", "redis", "asyncpg", "starlette", "httpx"),
    "problems": ("pydantic", "redis", "asyncpg", "httpx"),
    "web_input": ("redis", "asyncpg", "httpx"),
    "egress": ("httpx", "redis", "asyncpg"),
}


def _imports(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def _units() -> dict[str, list[Path]]:
    units: dict[str, list[Path]] = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        units.setdefault(path.relative_to(PACKAGE).parts[0].removesuffix(".py"), []).append(path)
    return units


def _certq_units(path: Path) -> set[str]:
    """The certq units one file imports (`from certq import x` counts as unit x)."""
    units: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            parts = node.module.split(".")
            if parts[0] == "certq":
                units.update(parts[1:2] or [alias.name for alias in node.names])
        elif isinstance(node, ast.Import):
            units.update(alias.name.split(".")[1] for alias in node.names if alias.name.startswith("certq."))
    return units


def test_every_unit_of_the_package_has_a_place_in_the_layering() -> None:
    assert sorted(_units()) == sorted(ALLOWED)


@pytest.mark.parametrize("unit", sorted(ALLOWED))
def test_a_unit_imports_only_the_certq_units_it_is_allowed(unit: str) -> None:
    offenders = [
        f"{path.relative_to(PACKAGE.parent)} imports certq.{name}"
        for path in _units().get(unit, [])
        for name in sorted(_certq_units(path) - {unit} - ALLOWED[unit])
    ]
    assert offenders == []


@pytest.mark.parametrize("unit", sorted(FORBIDDEN_LIBRARIES))
def test_a_layer_imports_none_of_its_forbidden_libraries(unit: str) -> None:
    offenders = [
        f"{path.relative_to(PACKAGE.parent)} imports {name}"
        for path in _units().get(unit, [])
        for name in _imports(path)
        if any(name == bad or name.startswith(bad + ".") for bad in FORBIDDEN_LIBRARIES[unit])
    ]
    assert offenders == []
