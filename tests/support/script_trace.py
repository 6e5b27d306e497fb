"""Checks every Lua script fakeredis runs for what a Redis Cluster slot migration needs.

Redis checks only a script's declared KEYS before running it. While the slot moves, reaching a key that
has already left aborts the script and keeps its earlier writes. So after a script's first write it must
reach only keys it declared or already reached (then any abort happens before the first write).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pytest
from fakeredis.commands_mixins.scripting_mixin import ScriptingCommandsMixin

WRITES = {
    "SET",
    "DEL",
    "UNLINK",
    "HSET",
    "HSETNX",
    "HINCRBY",
    "HDEL",
    "LPUSH",
    "RPUSH",
    "LREM",
    "RPOP",
    "LPOP",
    "ZADD",
    "ZREM",
    "ZREMRANGEBYSCORE",
    "XADD",
    "PEXPIRE",
    "EXPIRE",
    "SADD",
    "SREM",
    "INCR",
    "INCRBY",
}
ALL_ARGS_ARE_KEYS = {"DEL", "UNLINK", "EXISTS", "MGET"}


def _as_bytes(value: Any) -> bytes:
    return value if isinstance(value, bytes) else str(value).encode()


@dataclass
class _Run:
    script: str
    declared: set[bytes]
    reached: set[bytes] = field(default_factory=set)
    written: bool = False


@dataclass
class ScriptTrace:
    violations: list[str] = field(default_factory=list)
    runs: int = 0
    _stack: list[_Run] = field(default_factory=list)

    def install(self, monkeypatch: pytest.MonkeyPatch) -> None:
        original_eval = ScriptingCommandsMixin.eval
        original_call = ScriptingCommandsMixin._lua_redis_call
        trace = self

        def traced_eval(self: Any, script: bytes, numkeys: int, *keys_and_args: bytes) -> Any:
            title = next(
                (line.strip() for line in script.decode(errors="replace").splitlines()[2:] if line.strip()), "?"
            )
            trace._stack.append(_Run(title, {_as_bytes(k) for k in keys_and_args[:numkeys]}))
            trace.runs += 1
            try:
                return original_eval(self, script, numkeys, *keys_and_args)
            finally:
                trace._stack.pop()

        def traced_call(self: Any, lua_runtime: Any, expected_globals: set[Any], op: bytes, *args: Any) -> Any:
            if trace._stack:
                trace.see(_as_bytes(op).decode().upper(), [_as_bytes(arg) for arg in args])
            return original_call(self, lua_runtime, expected_globals, op, *args)

        monkeypatch.setattr(ScriptingCommandsMixin, "eval", traced_eval)
        monkeypatch.setattr(ScriptingCommandsMixin, "_lua_redis_call", traced_call)

    def see(self, command: str, args: list[bytes]) -> None:
        run = self._stack[-1]
        keys = args if command in ALL_ARGS_ARE_KEYS else args[:1]
        if run.written:
            for key in keys:
                if key not in run.declared and key not in run.reached:
                    self.violations.append(
                        f"{run.script!r}: {command} {key.decode()} after the first write, "
                        "neither declared nor reached before it"
                    )
        else:
            run.reached.update(keys)  # a key reached by the first write itself would abort before any change
            run.written = command in WRITES
