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

from certq.queue.keys import QueueKeys

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


def text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


class Scripts:
    """One registered script per Lua file; callers pass plain values, never KEYS/ARGV."""

    def __init__(self, redis: AnyRedis, keys: QueueKeys, events_maxlen: int) -> None:
        self.redis = redis
        self.keys = keys
        self.maxlen = str(events_maxlen)
        self.declares = isinstance(redis, RedisCluster)
        """Whether per-job keys are sent (a Cluster client); hot callers skip building them otherwise."""
        self._scripts: dict[str, tuple[AsyncScript, LuaSource]] = {}
        self._fixed_keys: dict[str, list[str]] = {}
        for name in SCRIPT_NAMES:
            source = load_source(name)
            self._scripts[name] = (redis.register_script(source.text), source)  # type: ignore[misc]
            if all(hasattr(keys, key) for key in source.keys):
                self._fixed_keys[name] = [getattr(keys, key) for key in source.keys]

    def key_list(self, name: str, **overrides: str) -> list[str]:
        if not overrides and name in self._fixed_keys:
            return self._fixed_keys[name]
        source = self._scripts[name][1]
        return [overrides[key] if key in overrides else getattr(self.keys, key) for key in source.keys]

    async def run(self, name: str, args: list[Any], *, declare: Sequence[str] = (), **key_overrides: str) -> Any:
        """Run script `name`; `declare` are the per-job keys of its header's `KEYS[n..]` line."""
        script, source = self._scripts[name]
        keys = self.key_list(name, **key_overrides)
        if declare:
            if not source.declares:
                raise ValueError(f"{name}.lua declares no per-job keys")
            if self.declares:
                keys = [*keys, *declare]
        return await script(keys=keys, args=[self.keys.base, self.maxlen, *args])
