"""What each Lua script takes and returns, as types: one call class per script (its `argv()` is ARGV[3..] in
the order of the script's header) and the named replies. Pure: no Redis here (`Scripts` runs the calls)."""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Literal, NamedTuple, TypeVar

from certq.queue.errors import ScriptReplyError
from certq.queue.job import Priority

RedisText = bytes | str
"""A string reply: bytes, or str on a client made with decode_responses."""


def text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


_W = TypeVar("_W", bound=str)


def reply_word(script: str, reply: Any, allowed: tuple[_W, ...]) -> _W:
    """A script's one-word reply, checked against the words its header allows."""
    word = text(reply)
    for option in allowed:
        if option == word:
            return option
    raise ScriptReplyError(f"{script}.lua returned {word!r}, not one of {', '.join(allowed)}")


class LeaseStatus(enum.IntEnum):
    """Per lease, what a heartbeat did (heartbeat.lua's reply values)."""

    LOST = 0
    RENEWED = 1
    CANCEL_REQUESTED = 2
    """Renewed, but someone asked to cancel the job."""


@dataclass(frozen=True, slots=True)
class EnqueueJob:
    """One job of an enqueue call: the 8 NUL-separated values of one ARGV[4..]."""

    job_id: str
    payload: str
    """JSON text of an object."""
    priority: Priority
    delay_ms: int
    max_attempts: int
    timeout_ms: int | None
    dedupe_key: str | None
    group: str | None

    def packed(self) -> str:
        return "\0".join(
            (
                self.job_id,
                self.payload,
                self.priority,
                str(self.delay_ms),
                str(self.max_attempts),
                "" if self.timeout_ms is None else str(self.timeout_ms),
                self.dedupe_key or "",
                self.group or "",
            )
        )


@dataclass(frozen=True, slots=True)
class EnqueueCall:
    script: ClassVar[str] = "enqueue"
    now: int
    jobs: Sequence[EnqueueJob]

    def argv(self) -> list[str]:
        return [str(self.now), *(job.packed() for job in self.jobs)]


class EnqueueReply(NamedTuple):
    added: bool
    """False: `job_id` is the job that already existed (same id, or same dedupe key and still pending)."""
    job_id: str


@dataclass(frozen=True, slots=True)
class Completion:
    """One job to complete: the 4 NUL-separated values per completion of complete.lua's ARGV[11]."""

    job_id: str
    token: str
    result: str
    """JSON text."""
    dedupe_key: str | None

    def packed(self) -> str:
        return "\0".join((self.job_id, self.token, self.result, self.dedupe_key or ""))


@dataclass(frozen=True, slots=True)
class CompleteCall:
    script: ClassVar[str] = "complete"
    now: int
    lease_ms: int
    consumer_id: str
    token_prefix: str
    claim: int
    keep_completed: int
    """-1 keeps all."""
    rate_limits: str
    completions: Sequence[Completion]

    def argv(self) -> list[str]:
        return [
            str(self.now),
            str(self.lease_ms),
            self.consumer_id,
            self.token_prefix,
            str(self.claim),
            str(self.keep_completed),
            self.rate_limits,
            str(len(self.completions)),
            "\0".join(completion.packed() for completion in self.completions),
        ]


class ClaimedJob(NamedTuple):
    """A job a consumer has just leased: `claimed_reply` of lua/includes/start.lua, field for field. The
    optional fields are raw hash values (None when unset); the consumer decodes them and fails a job whose
    values do not parse."""

    job_id: str
    token: str
    payload: RedisText
    attempts: int
    max_attempts: RedisText | None
    attempts_base: RedisText | None
    priority: RedisText | None
    group: RedisText | None
    timeout_ms: RedisText | None
    created_at: RedisText | None
    stalls: RedisText | None
    dedupe_key: RedisText | None
    progress: RedisText | None

    @classmethod
    def from_reply(cls, item: Sequence[Any]) -> ClaimedJob:
        if len(item) != len(cls._fields):
            raise ScriptReplyError(f"a claimed job has {len(item)} values, not {len(cls._fields)}")
        return cls(text(item[0]), text(item[1]), *item[2:])


class CompleteReply(NamedTuple):
    statuses: list[bool]
    """Per completion: True done, False the lease was lost."""
    claimed: list[ClaimedJob]
    paused: bool


@dataclass(frozen=True, slots=True)
class StartCall:
    script: ClassVar[str] = "start"
    job_id: str
    now: int
    lease_ms: int
    token: str
    consumer_id: str
    rate_limits: str
    source: Priority
    """The priority of the wait list BLMOVE took the job from (it goes back there if the queue is paused)."""

    def argv(self) -> list[str]:
        return [
            self.job_id,
            str(self.now),
            str(self.lease_ms),
            self.token,
            self.consumer_id,
            self.rate_limits,
            self.source,
        ]


StartStatus = Literal["ok", "gone", "paused", "corrupt", "cancelled", "limited"]
START_STATUSES: tuple[StartStatus, ...] = ("ok", "gone", "paused", "corrupt", "cancelled", "limited")


class StartReply(NamedTuple):
    status: StartStatus
    claimed: ClaimedJob | None
    """Set when `status` is "ok"."""


@dataclass(frozen=True, slots=True)
class FailCall:
    script: ClassVar[str] = "fail"
    job_id: str
    token: str
    now: int
    message: str
    category: str
    """'' for none."""
    error_entry: str
    """JSON object appended to the job's errors."""
    final: bool
    delay_ms: int

    def argv(self) -> list[str]:
        return [
            self.job_id,
            self.token,
            str(self.now),
            self.message,
            self.category,
            self.error_entry,
            "1" if self.final else "0",
            str(self.delay_ms),
        ]


FailOutcome = Literal["delayed", "failed", "lost"]
FAIL_OUTCOMES: tuple[FailOutcome, ...] = ("delayed", "failed", "lost")


@dataclass(frozen=True, slots=True)
class ReleaseCall:
    script: ClassVar[str] = "release"
    job_id: str
    token: str

    def argv(self) -> list[str]:
        return [self.job_id, self.token]


@dataclass(frozen=True, slots=True)
class ProgressCall:
    script: ClassVar[str] = "progress"
    job_id: str
    token: str
    progress: str
    """JSON text."""

    def argv(self) -> list[str]:
        return [self.job_id, self.token, self.progress]


@dataclass(frozen=True, slots=True)
class HeartbeatCall:
    script: ClassVar[str] = "heartbeat"
    now: int
    lease_ms: int
    consumer_id: str
    info: str
    """JSON text of this consumer's registry entry."""
    worker_ttl_ms: int
    leases: Sequence[tuple[str, str]]
    """(job id, lease token) pairs."""

    def argv(self) -> list[str]:
        args = [str(self.now), str(self.lease_ms), self.consumer_id, self.info, str(self.worker_ttl_ms)]
        for job_id, token in self.leases:
            args += [job_id, token]
        return args


@dataclass(frozen=True, slots=True)
class PromoteCall:
    script: ClassVar[str] = "promote"
    now: int
    limit: int
    job_id: str = ""
    """One job to promote whatever its due time; '' for every due job."""

    def argv(self) -> list[str]:
        return [str(self.now), str(self.limit), self.job_id]


class PromoteReply(NamedTuple):
    moved: int
    next_due: int | None
    """Due time of the next delayed job, None if there is none."""


@dataclass(frozen=True, slots=True)
class RecoverStalledCall:
    script: ClassVar[str] = "recover_stalled"
    now: int
    check_interval_ms: int
    max_stalls: int

    def argv(self) -> list[str]:
        return [str(self.now), str(self.check_interval_ms), str(self.max_stalls)]


class StalledReply(NamedTuple):
    recovered: list[str]
    """Ids moved back to wait."""
    failed: list[str]
    """Ids moved to failed (cancelled, or stalled too often)."""


@dataclass(frozen=True, slots=True)
class CancelCall:
    script: ClassVar[str] = "cancel"
    job_id: str
    now: int

    def argv(self) -> list[str]:
        return [self.job_id, str(self.now)]


CancelOutcome = Literal["removed", "flagged", "finished", "not_found"]
CANCEL_OUTCOMES: tuple[CancelOutcome, ...] = ("removed", "flagged", "finished", "not_found")


@dataclass(frozen=True, slots=True)
class RemoveCall:
    script: ClassVar[str] = "remove"
    job_id: str

    def argv(self) -> list[str]:
        return [self.job_id]


RemoveOutcome = Literal["removed", "not_found", "active"]


@dataclass(frozen=True, slots=True)
class RetryCall:
    script: ClassVar[str] = "retry"
    job_id: str = ""
    """'' for every failed job not cancelled."""

    def argv(self) -> list[str]:
        return [self.job_id]


@dataclass(frozen=True, slots=True)
class CleanCall:
    script: ClassVar[str] = "clean"
    cutoff: int
    """Epoch ms: jobs finished before it go."""
    limit: int
    state: Literal["completed", "failed"]

    def argv(self) -> list[str]:
        return [str(self.cutoff), str(self.limit), self.state]


ScriptCall = (
    EnqueueCall
    | CompleteCall
    | StartCall
    | FailCall
    | ReleaseCall
    | ProgressCall
    | HeartbeatCall
    | PromoteCall
    | RecoverStalledCall
    | CancelCall
    | RemoveCall
    | RetryCall
    | CleanCall
)
