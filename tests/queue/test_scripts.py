from __future__ import annotations

import re
from importlib import resources

import pytest

from certq.queue.keys import QueueKeys
from certq.queue.scripts import SCRIPT_NAMES, load_source

LUA = resources.files("certq.queue").joinpath("lua")


def test_every_lua_file_has_a_wrapper_and_every_wrapper_a_file() -> None:
    files = {entry.name[:-4] for entry in LUA.iterdir() if entry.name.endswith(".lua")}
    assert files == set(SCRIPT_NAMES)


@pytest.mark.parametrize("name", SCRIPT_NAMES)
def test_header_names_keys_in_order_and_arguments(name: str) -> None:
    raw = LUA.joinpath(f"{name}.lua").read_text()
    header = raw.split("]]", 1)[0]
    assert raw.startswith("--[[") and "Returns" in header
    numbers = [int(n) for n in re.findall(r"KEYS\[(\d+)\]", header)]
    assert numbers == list(range(1, len(numbers) + 1))
    source = load_source(name)
    assert all(hasattr(QueueKeys(), key) or key in ("list", "source") for key in source.keys)
    assert "ARGV[1] key base" in header and "ARGV[2] events maxlen" in header
    assert "'TIME'" not in source.text  # time comes in through ARGV, never redis.call('TIME')
    assert "-- @include" not in source.text


@pytest.mark.parametrize("name", SCRIPT_NAMES)
def test_scripts_use_only_keys_they_declare(name: str) -> None:
    source = load_source(name)
    used = set(re.findall(r"\bK\.(\w+)", source.text.split("\n", 1)[1]))
    includes_only = {"wait_high", "wait", "wait_low", "events", "active", "delayed", "failed"}
    assert used - set(source.keys) <= includes_only  # helpers reference these only when called
