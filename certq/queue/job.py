"""Job records as stored in their Redis HASH, the JobState enum and named state sets; no I/O."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any, Literal

import orjson

Priority = Literal["high", "normal", "low"]


class JobState(enum.StrEnum):
    """The structure a job id is in: one of the wait lists, active, delayed, completed or failed."""

    WAITING = "waiting"
    ACTIVE = "active"
    DELAYED = "delayed"
    COMPLETED = "completed"
    FAILED = "failed"


PENDING_STATES = frozenset({JobState.WAITING, JobState.DELAYED, JobState.ACTIVE})
"""States from which a job will still run (a dedupe key keeps pointing at such a job)."""
FINISHED_STATES = frozenset({JobState.COMPLETED, JobState.FAILED})


class CorruptJob(ValueError):
    """A job HASH that cannot be read back (missing fields, bad JSON)."""


@dataclass(slots=True)
class Job:
    """A snapshot of one job. Times are epoch milliseconds; `attempts` counts every start (also stalls)
    and only grows, so `(id, attempts)` names one attempt and can fence writes elsewhere."""

    id: str
    payload: dict[str, Any]
    state: JobState
    attempts: int = 0
    max_attempts: int = 1
    priority: Priority = "normal"
    group: str | None = None
    progress: Any = None
    result: Any = None
    last_error: str | None = None
    error_category: str | None = None
    errors: list[dict[str, Any]] = field(default_factory=list)
    created_at: int = 0
    processed_at: int | None = None
    finished_at: int | None = None
    due_at: int | None = None
    timeout_ms: int | None = None
    dedupe_key: str | None = None
    stalls: int = 0
    attempts_base: int = 0
    """Starts that do not count against max_attempts (released at shutdown, stalled, or before a replay)."""
    cancelled: bool = False
    existing: bool = False
    """Set by `Queue.enqueue` when the job already existed (same id or dedupe key) and was not added."""

    @property
    def attempts_counted(self) -> int:
        """Attempts that count against max_attempts (1 during the first counted attempt)."""
        return self.attempts - self.attempts_base

    @property
    def attempts_left(self) -> int:
        return max(0, self.max_attempts - self.attempts_counted)

    @classmethod
    def from_hash(cls, raw: dict[bytes, bytes] | dict[str, str]) -> Job:
        """Build a Job from HGETALL output; raise CorruptJob naming what is wrong."""
        data = {_text(k): _text(v) for k, v in raw.items()}
        try:
            job_id = data["id"]
            state = JobState(data["state"])
            payload = orjson.loads(data["payload"])
        except KeyError as exc:
            raise CorruptJob(f"missing field {exc.args[0]!r}") from None
        except (ValueError, orjson.JSONDecodeError) as exc:
            raise CorruptJob(f"unreadable job data: {exc}") from None
        if not isinstance(payload, dict):
            raise CorruptJob("payload is not a JSON object")
        priority = data.get("priority", "normal")
        try:
            return cls(
                id=job_id,
                payload=payload,
                state=state,
                attempts=int(data.get("attempts", 0)),
                max_attempts=int(data.get("max_attempts", 1)),
                attempts_base=int(data.get("attempts_base", 0)),
                priority=priority if priority in ("high", "low") else "normal",  # type: ignore[arg-type]
                group=data.get("group") or None,
                progress=_json(data.get("progress")),
                result=_json(data.get("result")),
                last_error=data.get("last_error") or None,
                error_category=data.get("category") or None,
                errors=_json(data.get("errors")) or [],
                created_at=int(data.get("created_at", 0)),
                processed_at=_int(data.get("processed_at")),
                finished_at=_int(data.get("finished_at")),
                due_at=_int(data.get("due_at")),
                timeout_ms=_int(data.get("timeout_ms")),
                dedupe_key=data.get("dedupe_key") or None,
                stalls=int(data.get("stalls", 0)),
                cancelled=data.get("cancel") == "1",
            )
        except (ValueError, orjson.JSONDecodeError) as exc:
            raise CorruptJob(f"unreadable job data: {exc}") from None


def encode_json(value: Any, what: str = "payload") -> str:
    """orjson text of `value`; a TypeError names `what` when the value is not JSON-serializable."""
    try:
        return orjson.dumps(value).decode()
    except TypeError as exc:
        raise TypeError(f"{what} is not JSON-serializable: {exc}") from None


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _json(text: str | None) -> Any:
    return None if text is None or text == "" else orjson.loads(text)


def _int(text: str | None) -> int | None:
    return None if text is None or text == "" else int(text)
