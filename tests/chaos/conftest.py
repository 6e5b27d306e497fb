"""Chaos drills run real processes; what the test process itself leaves behind is collected at quiet moments."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.ha.conftest import collect_quietly


@pytest.fixture(autouse=True)
def collect_garbage_now() -> Iterator[None]:
    yield
    collect_quietly()
