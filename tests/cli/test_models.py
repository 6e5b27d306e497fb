"""`certq models`: register, update, show and list model deployments and their capabilities through the API."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.cli.conftest import Result
from tests.conftest import ApiServer

RunCli = Callable[..., Result]


@pytest.fixture
def models_cli(api_server: ApiServer, run_cli: RunCli) -> Callable[..., Any]:
    """`await models_cli("register", ...)`: the command in a thread, so this loop goes on serving the API."""

    async def run(*argv: str) -> Result:
        return await asyncio.to_thread(
            run_cli, "models", *argv, "--api-url", api_server.url, "--token", api_server.token
        )

    return run


def _register(name: str, *flags: str) -> list[str]:
    return [
        "register",
        "--name",
        name,
        "--provider",
        "openai",
        "--model",
        "tiny",
        "--base-url",
        "http://127.0.0.1:9/v1",
        "--region",
        "local",
        *flags,
    ]


async def test_register_declares_capabilities_and_show_and_list_display_them(
    models_cli: Callable[..., Any], tmp_path: Path
) -> None:
    schema = {"type": "object", "properties": {"city": {"type": "string"}}}
    (tmp_path / "city.json").write_text(json.dumps(schema))
    name = f"cli-{uuid.uuid4().hex[:8]}"
    flags = ["--tools", "--output-schema", str(tmp_path / "city.json"), "--context-window", "8192"]
    registered = await models_cli(*_register(name, *flags, "--max-output-tokens", "1024"), "--json")
    assert registered.code == 0, registered.err
    model = registered.json()
    assert model["capabilities"] == {
        "tools": True,
        "structuredOutput": schema,
        "contextWindow": 8192,
        "maxOutputTokens": 1024,
        "tokenAccounting": True,
    }
    shown = await models_cli("show", model["id"])
    assert shown.code == 0, shown.err
    line = "capabilities  chat, tools, structured output (declared schema), context window 8192, max output 1024"
    assert f"{line}, token accounting" in shown.out
    listed = await models_cli("list")
    assert listed.code == 0 and name in listed.out
    [row] = [row for row in listed.out.splitlines() if name in row]
    assert row.endswith(
        "chat, tools, structured output (declared schema), context window 8192, max output 1024, token accounting"
    )


async def test_update_replaces_the_declaration_and_no_capabilities_clears_it(models_cli: Callable[..., Any]) -> None:
    model = (await models_cli(*_register(f"cli-{uuid.uuid4().hex[:8]}", "--tools"), "--json")).json()
    updated = await models_cli("update", model["id"], "--structured-output", "--no-token-accounting", "--json")
    assert updated.code == 0, updated.err
    capabilities = updated.json()["capabilities"]
    assert capabilities["tools"] is False and capabilities["structuredOutput"] is True
    assert capabilities["tokenAccounting"] is False
    cleared = await models_cli("update", model["id"], "--no-capabilities")
    assert cleared.code == 0 and "capabilities  chat, token accounting" in cleared.out


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["update", "MODEL", "--context-window", "10"], "--context-window: must be an integer from 256"),
        (
            ["update", "MODEL", "--context-window", "1000", "--max-output-tokens", "1000"],
            "--max-output-tokens: must be below contextWindow (1000)",
        ),
        (["update", "MODEL"], "nothing to change"),
        (["update", "MODEL", "--no-capabilities", "--tools"], "cannot be combined"),
        (["update", "not-a-uuid", "--tools"], "is not a uuid"),
        (["update", "MODEL", "--output-schema", "/nonexistent.json"], "--output-schema: cannot read"),
    ],
)
async def test_bad_capability_flags_exit_2_naming_the_flag_and_change_nothing(
    models_cli: Callable[..., Any], argv: list[str], message: str
) -> None:
    model = (await models_cli(*_register(f"cli-{uuid.uuid4().hex[:8]}", "--tools"), "--json")).json()
    result = await models_cli(*[model["id"] if a == "MODEL" else a for a in argv])
    assert result.code == 2 and message in result.err and "Traceback" not in result.err, result.err
    assert (await models_cli("show", model["id"], "--json")).json()["capabilities"]["tools"] is True


async def test_what_the_api_refuses_is_printed_with_a_non_zero_exit(models_cli: Callable[..., Any]) -> None:
    refused = await models_cli("register", "--name", "x", "--provider", "openai", "--model", "m", "--region", "local")
    assert refused.code == 1 and "the API refused (400): baseUrl" in refused.err
    missing = await models_cli("show", str(uuid.uuid4()))
    assert missing.code == 4 and "the API refused (404)" in missing.err


def test_an_unreachable_api_exits_5(run_cli: RunCli) -> None:
    result = run_cli("models", "list", "--api-url", "http://127.0.0.1:1", "--token", "t")
    assert result.code == 5 and "no answer from the API at http://127.0.0.1:1" in result.err


@pytest.mark.parametrize("url", ["http://[::1", "ftp://127.0.0.1:21"])
def test_a_malformed_api_url_exits_2_naming_the_flag(run_cli: RunCli, url: str) -> None:
    result = run_cli("models", "list", "--api-url", url, "--token", "t")
    assert result.code == 2 and "--api-url" in result.err and "Traceback" not in result.err, result.err


def test_a_schema_file_the_api_would_refuse_exits_2_before_any_request(run_cli: RunCli, tmp_path: Path) -> None:
    schema = tmp_path / "s.json"
    schema.write_text('{"type": "object", "$schema": []}')
    argv = ["models", "register", "--name", "x", "--provider", "openai", "--model", "m", "--region", "local"]
    result = run_cli(*argv, "--base-url", "http://127.0.0.1:1/v1", "--output-schema", str(schema), "--token", "t")
    assert result.code == 2 and "must be a string" in result.err and "Traceback" not in result.err, result.err
