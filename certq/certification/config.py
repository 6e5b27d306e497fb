"""Knobs of a certification run; defaults suit hosted endpoints, tests shrink the timeouts."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from certq.certification.limits import ResponseLimits
from certq.egress import EgressPolicy


@dataclass(frozen=True)
class RunConfig:
    """Timeouts (seconds), in-run retries, the token budget, verdict thresholds, response caps and egress policy."""

    connect_timeout_s: float = 5.0
    read_timeout_s: float = 60.0
    stream_idle_timeout_s: float = 30.0
    request_deadline_s: float = 120.0
    run_deadline_s: float | None = None  # whole run; set below the job timeout to get a verdict, not a cancel
    max_retries: int = 5  # per request; a transient failure (429, 5xx, reset, read timeout) is retried
    retry_budget: int = 30  # per run: once spent, the next transient failure ends the run (an outage)
    backoff_base_s: float = 0.5
    backoff_cap_s: float = 8.0
    max_retry_after_s: float = 30.0
    max_tokens: int = 256
    certify_score: int = 80
    warning_score: int = 60
    performance_requests: int = 5
    burst_size: int = 4
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep
    rng: random.Random = field(default_factory=random.Random)
    limits: ResponseLimits = field(default_factory=ResponseLimits)
    egress: EgressPolicy | None = None  # None: connect anywhere (the one-shot CLI, tests of other things)

    def backoff_s(self, retry: int, retry_after_s: float | None) -> float | None:
        """Delay before retry number `retry` (1-based); None when the server asks for more than we wait in-run."""
        if retry_after_s is not None:
            return retry_after_s if retry_after_s <= self.max_retry_after_s else None
        delay = min(self.backoff_cap_s, self.backoff_base_s * 2 ** (retry - 1))
        return float(delay * (1.0 - 0.25 * self.rng.random()))
