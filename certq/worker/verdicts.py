"""Finished verdicts kept with their queue job while PostgreSQL cannot take them, sealed against edits in Redis.

When the verdict write fails because PostgreSQL is away, the handler keeps the verdict in the job's
progress (the queue keeps progress when it takes the job back) and the next attempt writes it instead
of probing the model again. Whoever can write Redis could edit it there, so it is sealed with an HMAC
keyed by the database URL: only a process that could write a verdict to PostgreSQL itself can make one
the worker accepts. A verdict that is too large, too old or not sealed by this key is not used: the
next attempt probes again, as it did before verdicts were kept.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import time
from collections.abc import Callable
from typing import Any

import orjson

log = logging.getLogger("certq.worker")

PROGRESS_FIELD = "savedVerdict"
"""The key of the job's progress object that holds a kept verdict."""
MAX_KEPT_BYTES = 256 * 1024
"""Larger verdicts (long model answers quoted in probe details) are not kept; a whole run's is about 5 KiB."""
MAX_AGE_S = 24 * 3600.0
"""A verdict kept longer than this is dropped and the model probed again: a certification describes it now."""


class VerdictSeal:
    """Seals a finished verdict for one certification, and opens only what it sealed for that certification."""

    def __init__(self, secret: str, *, clock: Callable[[], float] = time.time) -> None:
        self._key = hashlib.sha256(b"certq kept verdict\0" + secret.encode()).digest()
        self.clock = clock

    def _mac(self, certification_id: str, saved_at: int, verdict: dict[str, Any]) -> str:
        body = orjson.dumps([certification_id, saved_at, verdict], option=orjson.OPT_SORT_KEYS)
        return hmac.new(self._key, body, hashlib.sha256).hexdigest()

    def seal(self, certification_id: str, verdict: dict[str, Any]) -> dict[str, Any] | None:
        """The JSON object to keep with the job, or None when the verdict is too large to keep."""
        saved_at = int(self.clock() * 1000)
        sealed = {
            "certificationId": certification_id,
            "savedAt": saved_at,
            "verdict": verdict,
            "mac": self._mac(certification_id, saved_at, verdict),
        }
        return sealed if len(orjson.dumps(sealed)) <= MAX_KEPT_BYTES else None

    def open(self, progress: Any, certification_id: str) -> dict[str, Any] | None:
        """The verdict kept in a job's `progress` for this certification, or None if there is none to use."""
        sealed = progress.get(PROGRESS_FIELD) if isinstance(progress, dict) else None
        if sealed is None:
            return None
        why = self._refusal(sealed, certification_id)
        if why is not None:
            log.warning(
                "kept verdict not used; probing again", extra={"certification_id": certification_id, "reason": why}
            )
            return None
        verdict: dict[str, Any] = sealed["verdict"]
        return verdict

    def _refusal(self, sealed: Any, certification_id: str) -> str | None:
        if not isinstance(sealed, dict) or not isinstance(sealed.get("verdict"), dict):
            return "not a kept verdict"
        saved_at, mac = sealed.get("savedAt"), sealed.get("mac")
        if (
            sealed.get("certificationId") != certification_id
            or not isinstance(saved_at, int)
            or not isinstance(mac, str)
        ):
            return "kept for another certification, or incomplete"
        if not hmac.compare_digest(mac, self._mac(certification_id, saved_at, sealed["verdict"])):
            return "its seal does not match (edited, or kept by a worker with another DATABASE_URL)"
        if self.clock() * 1000 - saved_at > MAX_AGE_S * 1000:
            return f"kept more than {MAX_AGE_S / 3600:g} h ago"
        return None
