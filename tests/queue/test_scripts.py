"""The Lua<->Python seam: each script's header (KEYS, ARGV, Returns) against its Lua text and its typed call."""

from __future__ import annotations

import re
from importlib import resources
from typing import get_args

import pytest

from certq.queue.errors import ScriptReplyError
from certq.queue.job import Priority
from certq.queue.keys import PRIORITIES, QueueKeys
from certq.queue.protocol import (
    FAIL_OUTCOMES,
    CancelCall,
    ClaimedJob,
    CleanCall,
    CompleteCall,
    Completion,
    EnqueueCall,
    EnqueueJob,
    FailCall,
    HeartbeatCall,
    ProgressCall,
    PromoteCall,
    RecoverStalledCall,
    ReleaseCall,
    RemoveCall,
    RetryCall,
    ScriptCall,
    StartCall,
    reply_word,
)
from certq.queue.scripts import SCRIPT_NAMES, Scripts, load_source

LUA = resources.files("certq.queue").joinpath("lua")
_ARGV_LINE = re.compile(r"^\s*ARGV\[(\d+)(\.\.)?\]\s*(.*)$", re.MULTILINE)
_ARITY = re.compile(r"(\d+) (NUL-separated )?values")


def _header(name: str) -> str:
    return LUA.joinpath(f"{name}.lua").read_text().split("]]", 1)[0]


def test_every_lua_file_has_a_wrapper_and_every_wrapper_a_file() -> None:
    files = {entry.name[:-4] for entry in LUA.iterdir() if entry.name.endswith(".lua")}
    assert files == set(SCRIPT_NAMES)
    assert all(callable(getattr(Scripts, name, None)) for name in SCRIPT_NAMES)


@pytest.mark.parametrize("name", SCRIPT_NAMES)
def test_header_names_keys_in_order_and_arguments(name: str) -> None:
    raw = LUA.joinpath(f"{name}.lua").read_text()
    header = _header(name)
    assert raw.startswith("--[[") and "Returns" in header
    numbers = [int(n) for n in re.findall(r"KEYS\[(\d+)\]", header)]
    assert numbers == list(range(1, len(numbers) + 1))
    source = load_source(name)
    assert all(isinstance(getattr(QueueKeys(), key, None), str) for key in source.keys), source.keys
    assert "ARGV[1] key base" in header and "ARGV[2] events maxlen" in header
    assert "'TIME'" not in source.text  # time comes in through ARGV, never redis.call('TIME')
    assert "-- @include" not in source.text


def _jobs(n: int) -> list[EnqueueJob]:
    return [EnqueueJob(f"j{i}", "{}", "high", 0, 3, None, None, "g") for i in range(n)]


def _completions(n: int) -> list[Completion]:
    return [Completion(f"j{i}", "tok", "null", "d" if i else None) for i in range(n)]


# Per script: sample calls, each with how many items it carries (the header's `N values` per item).
SAMPLES: dict[str, list[tuple[ScriptCall, int]]] = {
    "enqueue": [(EnqueueCall(1, _jobs(n)), n) for n in (0, 1, 3)],
    "complete": [(CompleteCall(1, 2, "c", "p", 4, -1, "", _completions(n)), n) for n in (0, 1, 3)],
    "start": [(StartCall("j", 1, 2, "tok", "c", "g=1/1000", "low"), 0)],
    "fail": [(FailCall("j", "tok", 1, "boom", "", "{}", False, 10), 0)],
    "release": [(ReleaseCall("j", "tok"), 0)],
    "heartbeat": [(HeartbeatCall(1, 2, "c", "{}", 3, [(f"j{i}", "tok") for i in range(n)]), n) for n in (0, 1, 3)],
    "recover_stalled": [(RecoverStalledCall(1, 2, 3), 0)],
    "promote": [(PromoteCall(1, 100), 0), (PromoteCall(1, 1, "j"), 0)],
    "cancel": [(CancelCall("j", 1), 0)],
    "remove": [(RemoveCall("j"), 0)],
    "retry": [(RetryCall(), 0), (RetryCall("j"), 0)],
    "clean": [(CleanCall(1, 2, "failed"), 0)],
    "progress": [(ProgressCall("j", "tok", "{}"), 0)],
}


def test_every_script_has_sample_calls_of_its_own() -> None:
    assert set(SAMPLES) == set(SCRIPT_NAMES)
    assert all(call.script == name for name, samples in SAMPLES.items() for call, _ in samples)


@pytest.mark.parametrize("name", SCRIPT_NAMES)
def test_typed_call_sends_the_arguments_the_header_lists(name: str) -> None:
    lines = _ARGV_LINE.findall(_header(name))
    assert [int(n) for n, _, _ in lines] == list(range(1, len(lines) + 1))
    assert all(not rest for _, rest, _ in lines[:-1]), "only the last ARGV line may repeat (ARGV[n..])"
    repeated = lines[-1][2] if lines[-1][1] else None
    fixed = len(lines) - (repeated is not None)
    packed = {int(n) - 1: int(m[1]) for n, _, text in lines if (m := _ARITY.search(text)) and m[2] and not _}
    for call, items in SAMPLES[name]:
        argv = ["base", "maxlen", *call.argv()]
        assert all(isinstance(arg, str) for arg in argv)
        if repeated is None:
            assert len(argv) == fixed, (call, argv)
        else:
            arity = _ARITY.search(repeated)
            assert arity is not None, f"{name}.lua: say how many values each ARGV[n..] item has"
            per_item = 1 if arity[2] else int(arity[1])
            assert len(argv) == fixed + items * per_item, (call, argv)
            if arity[2]:
                assert all(len(arg.split("\0")) == int(arity[1]) for arg in argv[fixed:])
        for index, count in packed.items():
            assert len(argv[index].split("\0")) == (items * count or 1), (call, index)


# -- which keys a script reaches: its own K.<name> uses plus those of the include helpers it calls --------

_STRING = re.compile(r"'(?:[^'\\]|\\.)*'|\"(?:[^\"\\]|\\.)*\"")
_COMMENT = re.compile(r"--\[\[.*?\]\]|--[^\n]*", re.DOTALL)
_FUNCTION = re.compile(r"^local function (\w+)", re.MULTILINE)
_INCLUDE = re.compile(r"^-- @include (\w+)\s*$", re.MULTILINE)


def _code(lua: str) -> str:
    """Lua without comments and string literals (a field named like a helper is no call)."""
    return _STRING.sub("''", _COMMENT.sub("", lua))


def _helpers(include: str) -> dict[str, str]:
    """Top-level function name -> its text, for one include file."""
    code = _code(LUA.joinpath("includes", f"{include}.lua").read_text())
    starts = [(m.start(), m[1]) for m in _FUNCTION.finditer(code)]
    ends = [start for start, _ in starts[1:]] + [len(code)]
    return {name: code[start:end] for (start, name), end in zip(starts, ends, strict=True)}


def _reached_keys(body: str, includes: list[str]) -> set[str]:
    """Every K.<name> the script body uses, directly or through the include helpers it calls (transitively)."""
    helpers: dict[str, str] = {}
    for include in includes:
        helpers.update(_helpers(include))
    seen: set[str] = set()
    pending = [body]
    keys: set[str] = set()
    while pending:
        code = pending.pop()
        keys.update(re.findall(r"\bK\.(\w+)", code))
        for name in set(re.findall(r"\b(\w+)\s*\(", code)) & set(helpers) - seen:
            seen.add(name)
            pending.append(helpers[name])
    return keys


def test_key_reach_follows_the_helpers_a_script_calls() -> None:
    assert _reached_keys("emit('x', id)", ["common"]) == {"events"}
    assert _reached_keys("touch_dedupe(d)", ["common"]) == set()
    assert _reached_keys("to_failed(jk, id, now, r, c)", ["common"]) == {"failed", "events"}
    assert _reached_keys("apply_start(p, true, 1, 2, 3, 4)", ["common", "start"]) == {
        "active",
        "delayed",
        "failed",
        "events",
    }


@pytest.mark.parametrize("name", SCRIPT_NAMES)
def test_scripts_declare_exactly_the_keys_they_reach(name: str) -> None:
    raw = LUA.joinpath(f"{name}.lua").read_text()
    reached = _reached_keys(_code(_INCLUDE.sub("", raw)), _INCLUDE.findall(raw))
    assert reached == set(load_source(name).keys)


def test_priorities_are_the_priority_literal_in_claim_order() -> None:
    assert PRIORITIES == get_args(Priority)
    keys = QueueKeys()
    assert [keys.wait_for(priority) for priority in PRIORITIES] == list(keys.wait_lists)


def test_a_reply_outside_the_header_is_refused_not_passed_on() -> None:
    assert reply_word("fail", b"delayed", FAIL_OUTCOMES) == "delayed"
    with pytest.raises(ScriptReplyError, match="fail.lua returned 'retrying'"):
        reply_word("fail", b"retrying", FAIL_OUTCOMES)
    claimed = [b"j", b"tok", b"{}", 1, *([None] * 9)]
    assert ClaimedJob.from_reply(claimed) == ("j", "tok", b"{}", 1, *([None] * 9))
    with pytest.raises(ScriptReplyError, match="12 values, not 13"):
        ClaimedJob.from_reply(claimed[:-1])
