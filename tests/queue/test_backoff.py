from __future__ import annotations

import random

from certq.queue.backoff import base_delay, jittered, retry_delay


def test_base_delay_doubles_from_base_until_cap() -> None:
    assert [base_delay(n, 1_000, 10_000) for n in range(1, 7)] == [1_000, 2_000, 4_000, 8_000, 10_000, 10_000]
    assert base_delay(0, 1_000, 10_000) == 0
    assert base_delay(10_000, 1_000, 10_000) == 10_000


def test_full_jitter_stays_within_zero_and_delay_and_spreads() -> None:
    rng = random.Random(7)
    samples = [jittered(8_000, rng) for _ in range(2_000)]
    assert min(samples) >= 0 and max(samples) <= 8_000
    assert min(samples) < 800 and max(samples) > 7_200


def test_retry_delay_is_jittered_base_delay() -> None:
    rng = random.Random(1)
    assert all(0 <= retry_delay(3, 500, 60_000, rng) <= 2_000 for _ in range(200))
