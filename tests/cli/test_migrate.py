"""`certq migrate` against something that is not PostgreSQL: exit 5 with a reason, never an empty one."""

from __future__ import annotations

import socket
from collections.abc import Callable, Iterator
from typing import Any

import pytest

import certq.cli.migrate
from certq.store import Store

Run = Callable[..., Any]


@pytest.fixture
def silent_port() -> Iterator[int]:
    """A port that accepts connections (the kernel's backlog) and never says a word."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)
        yield listener.getsockname()[1]


def test_a_port_that_never_speaks_postgresql_fails_within_the_timeout_saying_so(
    run_cli: Run, silent_port: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(certq.cli.migrate, "CONNECT_TIMEOUT_S", 0.5)
    result = run_cli("migrate", "--database-url", f"postgresql://postgres:secret@127.0.0.1:{silent_port}/x")
    assert result.code == 5
    assert (
        f"cannot connect to PostgreSQL at postgresql://postgres:***@127.0.0.1:{silent_port}/x: no PostgreSQL "
        "answer within 0.5s" in result.err
    )
    assert "secret" not in result.err


def test_an_error_without_a_message_is_named_by_its_type(run_cli: Run, monkeypatch: pytest.MonkeyPatch) -> None:
    async def refuses(*args: Any, **kwargs: Any) -> Any:
        raise ConnectionResetError()

    monkeypatch.setattr(Store, "connect", refuses)
    result = run_cli("migrate", "--database-url", "postgresql://postgres@127.0.0.1:5/x")
    assert result.code == 5
    assert result.err.strip().endswith("postgresql://postgres@127.0.0.1:5/x: ConnectionResetError()")
