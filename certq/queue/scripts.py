"""Loads lua/*.lua (resolving `-- @include` lines) and wraps each script in one typed method.

Each script's header names its KEYS (`KEYS[1] wait_high (LIST)`); the names are QueueKeys attributes,
so the key list is built from the header itself and a preamble `local K = {name = KEYS[i], ...}` lets
the Lua refer to keys by name. ARGV[1] is always the key base and ARGV[2] the events cap.
A header line `KEYS[n..] job:<id>, ...` says the caller appends the per-job keys it knows (`declare`):
the script builds the same names from the key base, but Redis Cluster checks only declared keys before
it runs a script, so declaring them makes a call during a slot migration fail up front (ASK/TRYAGAIN,
which the Cluster client retries) instead of inside the script. Only a Cluster client sends them
(`Scripts.declares`): elsewhere they would cost an argument each and check nothing.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Any, TypeAlias

from redis.asyncio import Redis
from redis.asyncio.cluster import RedisCluster
from redis.commands.core import AsyncScript

from certq.queue.errors import ScriptReplyError
from certq.queue.keys import QueueKeys
from certq.queue.protocol import (
    CANCEL_OUTCOMES,
    FAIL_OUTCOMES,
    START_STATUSES,
    CancelCall,
    CancelOutcome,
    ClaimedJob,
    CleanCall,
    CompleteCall,
    CompleteReply,
    EnqueueCall,
    EnqueueReply,
    FailCall,
    FailOutcome,
    HeartbeatCall,
    LeaseStatus,
    ProgressCall,
    PromoteCall,
    PromoteReply,
    RecoverStalledCall,
    ReleaseCall,
    RemoveCall,
    RemoveOutcome,
    RetryCall,
    ScriptCall,
    StalledReply,
    StartCall,
    StartReply,
    reply_word,
    text,
)

AnyRedis: TypeAlias = Redis | RedisCluster
_KEY_LINE = re.compile(r"^\s*KEYS\[(\d+)\]\s+(\w+)", re.MULTILINE)
_DECLARED_LINE = re.compile(r"^\s*KEYS\[(\d+)\.\.\]", re.MULTILINE)
_INCLUDE = re.compile(r"^-- @include (\w+)\s*$", re.MULTILINE)

SCRIPT_NAMES = (
    "enqueue",
    "complete",
    "start",
    "fail",
    "release",
    "heartbeat",
    "recover_stalled",
    "promote",
    "cancel",
    "remove",
    "retry",
    "clean",
    "progress",
)


@dataclass(frozen=True, slots=True)
class LuaSource:
    name: str
    keys: tuple[str, ...]
    text: str
    declares: bool
    """True when the header has a `KEYS[n..]` line: the caller may append per-job keys after `keys`."""


def _read(relative: str) -> str:
    path = resources.files("certq.queue").joinpath("lua")
    for part in relative.split("/"):
        path = path.joinpath(part)
    return path.read_text(encoding="utf-8")


@cache
def load_source(name: str) -> LuaSource:
    """The full text of lua/<name>.lua with includes resolved and the K preamble added."""
    raw = _read(f"{name}.lua")
    header = raw.split("]]", 1)[0]
    keys = [key for _, key in sorted((int(i), key) for i, key in _KEY_LINE.findall(header))]
    declared = [int(i) for i in _DECLARED_LINE.findall(header)]
    if declared not in ([], [len(keys) + 1]):
        raise ValueError(f"{name}.lua: KEYS[n..] must follow the last named key (KEYS[{len(keys) + 1}..])")
    body = _INCLUDE.sub(lambda m: _read(f"includes/{m.group(1)}.lua"), raw)
    preamble = "local K = {" + ", ".join(f"{key} = KEYS[{i}]" for i, key in enumerate(keys, 1)) + "}\n"
    return LuaSource(name, tuple(keys), preamble + body, bool(declared))


class Scripts:
    """One registered script per Lua file, run through one typed method each: a call object from
    `certq.queue.protocol` in (its fields are the script's ARGV), a named reply out. `declare` are the
    per-job keys of the header's `KEYS[n..]` line (sent only by a Cluster client, see `declares`)."""

    def __init__(self, redis: AnyRedis, keys: QueueKeys, events_maxlen: int) -> None:
        self.redis = redis
        self.keys = keys
        self.maxlen = str(events_maxlen)
        self.declares = isinstance(redis, RedisCluster)
        """Whether per-job keys are sent (a Cluster client); hot callers skip building them otherwise."""
        self._scripts: dict[str, tuple[AsyncScript, LuaSource, list[str]]] = {}
        for name in SCRIPT_NAMES:
            source = load_source(name)
            script = redis.register_script(source.text)  # type: ignore[misc]
            self._scripts[name] = (script, source, [getattr(keys, key) for key in source.keys])

    async def _run(self, call: ScriptCall, declare: Sequence[str] = ()) -> Any:
        script, source, keys = self._scripts[call.script]
        if declare:
            if not source.declares:
                raise ValueError(f"{call.script}.lua declares no per-job keys")
            if self.declares:
                keys = [*keys, *declare]
        return await script(keys=keys, args=[self.keys.base, self.maxlen, *call.argv()])

    async def enqueue(self, call: EnqueueCall, declare: Sequence[str] = ()) -> list[EnqueueReply]:
        return [EnqueueReply(bool(int(added)), text(job_id)) for added, job_id in await self._run(call, declare)]

    async def complete(self, call: CompleteCall, declare: Sequence[str] = ()) -> CompleteReply:
        statuses, claimed, paused = await self._run(call, declare)
        return CompleteReply([bool(s) for s in statuses], [ClaimedJob.from_reply(c) for c in claimed], bool(paused))

    async def start(self, call: StartCall, declare: Sequence[str] = ()) -> StartReply:
        reply = await self._run(call, declare)
        status = reply_word("start", reply[0], START_STATUSES)
        return StartReply(status, ClaimedJob.from_reply(reply[1]) if status == "ok" else None)

    async def fail(self, call: FailCall, declare: Sequence[str] = ()) -> FailOutcome:
        return reply_word("fail", await self._run(call, declare), FAIL_OUTCOMES)

    async def release(self, call: ReleaseCall, declare: Sequence[str] = ()) -> bool:
        """False: the lease was lost."""
        return bool(int(await self._run(call, declare)))

    async def progress(self, call: ProgressCall, declare: Sequence[str] = ()) -> bool:
        """False: the lease was lost."""
        return bool(int(await self._run(call, declare)))

    async def heartbeat(self, call: HeartbeatCall, declare: Sequence[str] = ()) -> list[LeaseStatus]:
        return [LeaseStatus(int(s)) for s in await self._run(call, declare)]

    async def promote(self, call: PromoteCall, declare: Sequence[str] = ()) -> PromoteReply:
        moved, next_due = await self._run(call, declare)
        return PromoteReply(int(moved), None if int(next_due) < 0 else int(next_due))

    async def recover_stalled(self, call: RecoverStalledCall) -> StalledReply | None:
        """None: another consumer ran the check within the interval."""
        reply = await self._run(call)
        if not isinstance(reply, list):
            return None
        recovered, failed = reply
        return StalledReply([text(i) for i in recovered], [text(i) for i in failed])

    async def cancel(self, call: CancelCall, declare: Sequence[str] = ()) -> CancelOutcome:
        return reply_word("cancel", await self._run(call, declare), CANCEL_OUTCOMES)

    async def remove(self, call: RemoveCall, declare: Sequence[str] = ()) -> RemoveOutcome:
        reply = await self._run(call, declare)
        if isinstance(reply, int):
            return "removed" if reply else "not_found"
        if text(reply) != "active":
            raise ScriptReplyError(f"remove.lua returned {text(reply)!r}, not 1, 0 or 'active'")
        return "active"

    async def retry(self, call: RetryCall, declare: Sequence[str] = ()) -> int:
        """How many jobs went back to wait."""
        return int(await self._run(call, declare))

    async def clean(self, call: CleanCall) -> int:
        """How many jobs were deleted."""
        return int(await self._run(call))
