"""When a pair's standing changes class, or its score falls by more than a margin: the drift rule.

Pure code: the store applies it to each new verdict and the one before it; the worker sends what it found.
"""

from __future__ import annotations

from typing import Literal

DriftKind = Literal["degraded", "recovered", "expired"]
DRIFT_KINDS: tuple[DriftKind, ...] = ("degraded", "recovered", "expired")

_RANK = {"CERTIFIED": 2, "QUALITY_WARNING": 1, "FAILED": 0}


def transition(
    previous_status: str | None,
    previous_score: float | None,
    status: str,
    score: float | None,
    *,
    margin: float,
    previous_expired: bool = False,
) -> DriftKind | None:
    """What a new verdict `status`/`score` is, after the pair's previous one.

    `degraded`: a worse class (CERTIFIED -> QUALITY_WARNING or FAILED, QUALITY_WARNING -> FAILED), or a score
    drop beyond `margin` within a class. `recovered`: a better class, or CERTIFIED again after the previous
    certificate had expired. None: nothing changed, or it is the pair's first verdict.
    """
    before, now = _RANK.get(previous_status or ""), _RANK.get(status)
    if before is None or now is None:
        return None
    if now < before:
        return "degraded"
    if now > before or (previous_expired and status == "CERTIFIED"):
        return "recovered"
    if previous_score is not None and score is not None and previous_score - score > margin:
        return "degraded"
    return None
