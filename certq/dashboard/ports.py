"""What the dashboard needs from the process that mounts it: a queue, a store, and the API's certify logic."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Literal, Protocol

from certq.store import Store

CertifyMode = Literal["single", "multiple", "all"]
ScheduleVerb = Literal["create", "update", "delete"]
Jobs = list[Any]
Workers = list[dict[str, Any]]


class BoardQueue(Protocol):
    """The producer-side calls of `certq.queue.Queue` the dashboard uses."""

    async def counts(self) -> dict[str, int]: ...
    async def list(self, state: str, offset: int = 0, limit: int = 50) -> Jobs: ...
    async def get(self, job_id: str) -> Any | None: ...
    async def retry(self, job_id: str) -> Any: ...
    async def retry_all_failed(self) -> int: ...
    async def promote(self, job_id: str) -> Any: ...
    async def remove(self, job_id: str) -> Any: ...
    async def clean(self, state: str, older_than_ms: int, limit: int) -> int: ...
    async def cancel(self, job_id: str) -> str: ...
    async def pause(self) -> Any: ...
    async def resume(self) -> Any: ...
    async def is_paused(self) -> bool: ...
    async def workers(self) -> Workers: ...


@dataclass(frozen=True)
class CertifyOrder:
    """A certification request made from the dashboard's form (single: one model; all: every active model)."""

    mode: CertifyMode
    model_ids: list[str]
    regions: list[str]
    priority: Literal["high", "normal", "low"] = "normal"


Certify = Callable[[CertifyOrder], Awaitable[tuple[int, dict[str, Any]]]]
"""The API's own certify logic: returns the HTTP status and JSON body `/api/certification-queue` would answer."""


@dataclass(frozen=True)
class ScheduleChange:
    """A schedule change asked for from the dashboard. `body` is the JSON /api/schedules takes (create: the POST
    body, update: the PATCH body, delete: unused); `actor` is who goes into the audit log."""

    verb: ScheduleVerb
    schedule_id: str | None
    body: bytes
    actor: str
    remote_addr: str | None


ChangeSchedule = Callable[[ScheduleChange], Awaitable[dict[str, Any]]]
"""The API's own schedule logic (its input models, checks, store calls and audit): returns the schedule as
/api/schedules answers it; raises certq.problems.Problem naming the field for a refusal."""


class BoardDeps(Protocol):
    """Where the dashboard finds its queue, store and certify logic; read on every request, because the
    host connects them in its lifespan, after the app is built. `None` answers 503."""

    @property
    def queue(self) -> BoardQueue | None: ...
    @property
    def store(self) -> Store | None: ...
    @property
    def certify(self) -> Certify | None: ...
    @property
    def schedules(self) -> ChangeSchedule | None: ...


@dataclass
class StaticDeps:
    """A BoardDeps whose parts are set directly (tests, or a host without its own container)."""

    queue: BoardQueue | None = None
    store: Store | None = None
    certify: Certify | None = None
    schedules: ChangeSchedule | None = None
