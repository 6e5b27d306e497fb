"""The dashboard's gate without a server: credentials, cross-site checks, production settings."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from starlette.datastructures import Headers

from certq.dashboard.guard import CSRF_HEADER, check_credentials, cross_site_reason
from certq.settings import SettingsError, load_settings
from tests.dashboard.conftest import Board, basic

LONG_TOKEN = "tok-" + "a" * 28


def test_credentials_must_match_both_user_and_password() -> None:
    assert check_credentials(basic("ops", "s3cret"), "ops", "s3cret") == "ops"
    assert check_credentials(basic("ops", "s3cret:with:colons"), "ops", "s3cret:with:colons") == "ops"
    for header in (
        basic("ops", "wrong"),
        basic("other", "s3cret"),
        basic("ops", ""),
        "Bearer s3cret",
        "Basic not-base64!",
        "Basic " + "b3Bz",
        None,
        "",
    ):
        assert check_credentials(header, "ops", "s3cret") is None, header


def test_only_same_origin_requests_with_the_header_may_change_state() -> None:
    def reason(method: str, **headers: str) -> str | None:
        return cross_site_reason(method, Headers(headers), "http")

    host = {"host": "board.example:3001"}
    assert reason("GET", **host) is None
    assert reason("POST", **host) is not None
    assert reason("POST", **host, **{CSRF_HEADER: "1"}) is None
    assert reason("POST", **host, **{CSRF_HEADER: "1", "origin": "http://board.example:3001"}) is None
    assert reason("POST", **host, **{CSRF_HEADER: "1", "origin": "https://board.example:3001"}) is None
    assert reason("POST", **host, **{CSRF_HEADER: "1", "origin": "http://evil.example"}) is not None
    assert reason("POST", **host, **{CSRF_HEADER: "1", "origin": "null"}) is not None
    assert reason("DELETE", **host, **{CSRF_HEADER: "1", "sec-fetch-site": "same-site"}) is not None


@pytest.mark.parametrize("password", ["", "admin123", "x", "elevenchars"])
def test_production_refuses_default_empty_or_short_dashboard_credentials(password: str) -> None:
    with pytest.raises(SettingsError) as refused:
        load_settings(env="production", api_tokens=LONG_TOKEN, board_password=password)
    assert refused.value.variable == "BULL_BOARD_PASSWORD"
    assert load_settings(env="production", api_tokens=LONG_TOKEN, board_password="long random!").env == "production"


@pytest.mark.parametrize("tokens", ["a", f"{LONG_TOKEN},short", "short-token-of-23-chars:admin"[:23] + ":read"])
def test_production_refuses_short_bearer_tokens(tokens: str) -> None:
    with pytest.raises(SettingsError) as refused:
        load_settings(env="production", api_tokens=tokens, board_password="long random!")
    assert refused.value.variable == "API_TOKENS"
    assert load_settings(env="development", api_tokens=tokens).env == "development"


async def test_failed_logins_are_throttled_per_client_and_logged(
    board: Board, caplog: pytest.LogCaptureFixture
) -> None:
    wrong = {"Authorization": basic(board.user, "not-the-password")}
    assert (await board.client.get("")).status_code == 200  # a right login is never slowed
    caplog.set_level("WARNING", logger="certq.dashboard.guard")
    for _ in range(10):
        assert (await board.client.get("", headers=wrong)).status_code == 401
    refused = await board.client.get("")  # even the right password waits out the window now
    assert refused.status_code == 429 and int(refused.headers["retry-after"]) > 0
    assert refused.headers["content-type"] == "application/problem+json"
    failed = [r for r in caplog.records if r.getMessage() == "dashboard login failed"]
    assert len(failed) == 10 and failed[-1].__dict__["client"] == "127.0.0.1"
    assert all("not-the-password" not in r.getMessage() + str(r.__dict__) for r in failed)


async def test_a_read_only_dashboard_may_look_but_not_act(
    redis_client: Any, store: Any, queue_config: Any, key_prefix: str, board_user: str
) -> None:
    from certq.dashboard import StaticDeps
    from certq.queue import Queue
    from tests.dashboard.conftest import BOARD_PATH, PASSWORD, serve_board

    settings = load_settings(
        board_username=board_user,
        board_password=PASSWORD,
        queue_prefix=key_prefix,
        board_path=BOARD_PATH,
        board_read_only=True,
    )
    queue = Queue(redis_client, queue_config)
    server, url = await serve_board(settings, StaticDeps(queue=queue, store=store))
    try:
        async with httpx.AsyncClient(
            base_url=url + BOARD_PATH + "/", timeout=10, headers={"Authorization": basic(board_user, PASSWORD)}
        ) as client:
            assert (await client.get("api/overview")).status_code == 200
            assert (await client.get("api/me")).json()["role"] == "read"
            for action in ("api/queue/pause", "api/jobs/retry-failed", "api/queue/clean"):
                refused = await client.post(action, json={}, headers={"X-Certq-Board": "1"})
                assert refused.status_code == 403 and "read-only" in refused.json()["detail"], refused.text
    finally:
        await server.stop()
    assert not await queue.is_paused()


async def test_a_failed_login_is_in_the_audit_log_with_the_claimed_user_never_the_password(board: Board) -> None:
    wrong = {"Authorization": basic("mallory", "hunter2-not-it")}
    assert (await board.client.get("api/overview", headers=wrong)).status_code == 401
    rows = await board.store.pool.fetch(
        "SELECT actor, action, target, detail, outcome, remote_addr FROM dashboard_audit "
        "WHERE action = 'login.failed' AND actor = 'login:mallory'"
    )
    assert len(rows) == 1
    row = rows[0]
    assert (row["outcome"], row["remote_addr"], row["target"]) == ("refused", "127.0.0.1", "/admin/queues/api/overview")
    assert row["detail"]["failuresInWindow"] >= 1
    assert "hunter2" not in str(dict(row))
