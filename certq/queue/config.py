"""QueueConfig: every tunable of a queue and its consumers, with the defaults the guarantees are measured at."""

from __future__ import annotations

from dataclasses import dataclass, field

from certq.queue.keys import QueueKeys


@dataclass(frozen=True, slots=True)
class QueueConfig:
    """Settings shared by producers and consumers of one queue.

    With the defaults a crashed consumer's jobs run again within `lease_ms + stalled_check_ms` (3.5 s):
    its leases expire (Redis TTL) and the next stalled check moves them back to wait. A live consumer
    renews its leases every `heartbeat_ms`, so it survives event-loop pauses up to `lease_ms - heartbeat_ms`.
    """

    prefix: str = "myia"
    name: str = "model-certification"
    lease_ms: int = 3_000
    heartbeat_ms: int = 500
    stalled_check_ms: int = 500
    max_stalls: int = 3
    """A job found stalled more than this many times goes to failed."""
    backoff_base_ms: int = 1_000
    backoff_cap_ms: int = 300_000
    default_max_attempts: int = 4
    rate_limits: dict[str, tuple[int, float]] = field(default_factory=dict)
    """group -> (tokens, period seconds); "*" applies to every group without its own entry."""
    keep_completed: int = 1_000
    """Completed jobs kept (newest); older ones and their hashes are deleted. -1 keeps all."""
    completed_max_age_ms: int | None = 7 * 24 * 3600 * 1000
    failed_max_age_ms: int | None = 30 * 24 * 3600 * 1000
    events_maxlen: int = 10_000
    """Approximate length cap of the events stream; 0 disables events."""
    block_ms: int = 1_000
    """How long an idle runner's BLMOVE blocks before it looks again (for pause, and for the priorities a
    runner with a single free slot does not block on); stopping waits for it."""
    promote_ms: int = 200
    retention_ms: int = 5_000
    worker_ttl_ms: int = 5_000

    def __post_init__(self) -> None:
        for name in (
            "lease_ms",
            "heartbeat_ms",
            "stalled_check_ms",
            "backoff_base_ms",
            "block_ms",
            "promote_ms",
            "retention_ms",
            "worker_ttl_ms",
            "default_max_attempts",
        ):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be positive")
        if self.heartbeat_ms >= self.lease_ms:
            raise ValueError("heartbeat_ms must be shorter than lease_ms")
        for group, (count, period) in self.rate_limits.items():
            if count <= 0 or period <= 0:
                raise ValueError(f"rate limit for {group!r} must be positive")
            if not group or ";" in group or "=" in group:
                raise ValueError(f"rate limit group {group!r} must be non-empty, without ';' or '='")

    @property
    def keys(self) -> QueueKeys:
        return QueueKeys(self.prefix, self.name)
