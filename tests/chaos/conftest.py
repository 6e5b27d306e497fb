"""Chaos drills run real processes; what the test process itself leaves behind is collected at quiet moments
(see tests/ha/conftest.py for why)."""

from __future__ import annotations

import gc
import warnings
from collections.abc import Iterator

import pytest


@pytest.fixture(autouse=True)
def collect_garbage_now() -> Iterator[None]:
    yield
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ResourceWarning)
        gc.collect()
