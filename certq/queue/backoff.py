"""Retry delays: exponential growth capped, then full jitter (AWS architecture blog's "full jitter")."""

from __future__ import annotations

import random


def base_delay(attempt: int, base_ms: int, cap_ms: int) -> int:
    """Delay before retry number `attempt` (1 = first retry) without jitter: base * 2^(attempt-1), capped."""
    if attempt < 1:
        return 0
    # Cap the exponent first so huge attempt counts cannot build huge integers.
    return min(cap_ms, base_ms * (1 << min(attempt - 1, 40)))


def jittered(delay_ms: int, rng: random.Random | None = None) -> int:
    """Full jitter: uniform in [0, delay]."""
    return int((rng or random).uniform(0, delay_ms))


def retry_delay(attempt: int, base_ms: int, cap_ms: int, rng: random.Random | None = None) -> int:
    return jittered(base_delay(attempt, base_ms, cap_ms), rng)
