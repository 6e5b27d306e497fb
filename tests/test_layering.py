"""Imports point one way: api/worker -> store, certification, queue -> stdlib and libraries."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "certq"

# For each layer, the certq modules it must never import.
FORBIDDEN: dict[str, tuple[str, ...]] = {
    "queue": ("certq.api", "certq.worker", "certq.store", "certq.certification", "certq.cli", "certq.dashboard"),
    "certification": (
        "certq.api",
        "certq.worker",
        "certq.store",
        "certq.queue",
        "certq.cli",
        "redis",
        "asyncpg",
        "starlette",
        "uvicorn",
    ),
    "store": ("certq.api", "certq.worker", "certq.cli", "certq.queue", "redis", "starlette"),
    "dashboard": ("certq.api", "certq.worker", "certq.cli"),
    "jobs": ("certq.api", "certq.worker", "certq.cli", "certq.dashboard"),
    "metrics": ("certq.api", "certq.worker", "certq.store", "certq.queue", "certq.certification"),
    "health": ("certq.api", "certq.worker", "certq.store", "certq.queue", "certq.certification"),
    "http_limits": (
        "certq.api",
        "certq.worker",
        "certq.store",
        "certq.queue",
        "certq.certification",
        "certq.dashboard",
        "certq.settings",
    ),
    "egress": (
        "certq.api",
        "certq.worker",
        "certq.store",
        "certq.queue",
        "certq.certification",
        "certq.dashboard",
        "certq.settings",
        "httpx",
        "redis",
        "asyncpg",
    ),
    # Settings validate themselves (the Redis topology rules included) and know no client library.
    "settings": (
        "certq.connections",
        "certq.api",
        "certq.worker",
        "certq.store",
        "certq.queue",
        "certq.cli",
        "certq.dashboard",
        "certq.certification",
        "redis",
        "asyncpg",
        "starlette",
        "httpx",
    ),
    # Cron slots in a time zone: pure (stdlib and cronsim), used by the store, the API, the CLI and the worker.
    "cron": ("certq", "pydantic", "redis", "asyncpg", "starlette", "httpx"),
    # The one writer of problem+json bodies, used by the API, the dashboard and the health servers.
    "problems": ("certq", "pydantic", "redis", "asyncpg", "httpx"),
    "web_input": (
        "certq.api",
        "certq.worker",
        "certq.store",
        "certq.queue",
        "certq.certification",
        "certq.cli",
        "certq.dashboard",
        "certq.settings",
        "certq.health",
        "redis",
        "asyncpg",
        "httpx",
    ),
}


def _imports(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def _layer_files(layer: str) -> list[Path]:
    directory = PACKAGE / layer
    if directory.is_dir():
        return sorted(directory.rglob("*.py"))
    module = PACKAGE / f"{layer}.py"
    return [module] if module.exists() else []


@pytest.mark.parametrize("layer", sorted(FORBIDDEN))
def test_layer_imports_point_one_way(layer: str) -> None:
    offenders = [
        f"{path.relative_to(PACKAGE.parent)} imports {name}"
        for path in _layer_files(layer)
        for name in _imports(path)
        if any(name == bad or name.startswith(bad + ".") for bad in FORBIDDEN[layer])
    ]
    assert offenders == []
