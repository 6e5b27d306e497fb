"""Garbage sent to the dashboard's JSON endpoints gets a problem+json 4xx naming the field, never a 500."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from certq.store.dashboard import DashboardQueries
from tests.dashboard.conftest import BOARD_PATH, PASSWORD, Api, Board, basic


def assert_problem(response: Any, status: int, field: str | None = None) -> None:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json"), response.headers
    if field is not None:
        assert response.json()["field"] == field, response.text


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ("model=%00", "model"),
        ("region=a%00b", "region"),
        ("jobId=%00", "jobId"),
        ("since=0001-01-01T00:00:00%2B14:00", "since"),
        ("until=9999-12-31T23:59:59-14:00", "until"),
    ],
)
async def test_history_filters_postgresql_cannot_take_are_400s(board: Board, query: str, field: str) -> None:
    assert_problem(await board.client.get(f"api/history?{query}"), 400, field)
    assert (await board.client.get("api/history")).status_code == 200  # the connection and server stay fine


async def test_a_pair_region_with_nul_is_a_400(board: Board, make_model: Any) -> None:
    model = await make_model(regions=["local"])
    assert_problem(await board.client.get(f"api/certifications/pair?modelId={model.id}&region=lo%00cal"), 400, "region")


@pytest.mark.parametrize("action", ["retry", "promote", "remove", "cancel"])
async def test_job_actions_on_an_id_with_nul_are_400s_and_audited(board: Board, action: str) -> None:
    assert_problem(await board.post(f"api/jobs/a%00b/{action}"), 400, "jobId")
    assert_problem(await board.client.get("api/jobs/a%00b"), 400, "jobId")
    page = await DashboardQueries(board.store.pool).list_audit(limit=100)
    assert [e.action for e in page.items if e.actor == board.user] == [action]


async def test_a_certify_order_with_nul_is_refused_and_audited(api: Api) -> None:
    response = await api.board.post("api/certify", json={"mode": "single", "modelIds": ["\x00"], "regions": ["\x00"]})
    assert_problem(response, 400, "modelId")
    audit = [e for e in (await DashboardQueries(api.store.pool).list_audit()).items if e.actor == api.user]
    assert [(e.action, e.outcome[:13]) for e in audit] == [("certify", "refused (400)")]


async def test_unknown_paths_and_wrong_methods_are_problem_json(board: Board) -> None:
    assert_problem(await board.client.get("api/nope"), 404, "path")
    assert_problem(await board.client.get("api/queue/pause"), 405, "path")
    assert_problem(await board.client.get("static/nope.js"), 404, "path")


async def test_an_unexpected_error_is_a_problem_json_500_and_the_connection_survives(
    board: Board, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def explode(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("boom")

    monkeypatch.setattr(board.queue, "counts", explode)
    assert_problem(await board.client.get("api/overview"), 500)
    monkeypatch.undo()
    assert (await board.client.get("api/overview")).status_code == 200


async def raw_request(board: Board, head: bytes) -> tuple[int, bytes]:
    """Send `head` as it is (headers httpx would not send) and read the status line and the rest."""
    host, port = board.url.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    try:
        writer.write(head)
        await writer.drain()
        async with asyncio.timeout(10):
            answer = await reader.read(65536)
    finally:
        writer.close()
    return int(answer.split(b" ", 2)[1]), answer


async def test_basic_credentials_that_are_not_ascii_are_a_401(board: Board) -> None:
    status, answer = await raw_request(
        board,
        f"GET {BOARD_PATH}/api/overview HTTP/1.1\r\nHost: x\r\n".encode()
        + b"Authorization: Basic \xe9\xe9\r\nConnection: close\r\n\r\n",
    )
    assert status == 401, answer
    assert b"application/problem+json" in answer


async def test_a_body_above_the_cap_is_a_413_without_reading_it_all(board: Board) -> None:
    status, answer = await raw_request(
        board,
        f"POST {BOARD_PATH}/api/queue/clean HTTP/1.1\r\nHost: x\r\nX-Certq-Board: 1\r\n"
        f"Authorization: {basic(board.user, PASSWORD)}\r\nContent-Type: application/json\r\n"
        "Content-Length: 50000000\r\n\r\n{".encode(),
    )
    assert status == 413, answer
    assert b'"field":"body"' in answer

    async def chunks() -> Any:
        for _ in range(20):
            yield b" " * 65536

    streamed = await board.client.post("api/queue/clean", content=chunks(), headers={"X-Certq-Board": "1"})
    assert_problem(streamed, 413, "body")


async def test_an_unreachable_redis_cluster_is_a_503_not_a_500(board: Board, monkeypatch: pytest.MonkeyPatch) -> None:
    from redis.exceptions import RedisClusterException

    async def unreachable(*args: Any, **kwargs: Any) -> Any:
        raise RedisClusterException("Redis Cluster cannot be connected. Please provide at least one reachable node")  # type: ignore[no-untyped-call]

    monkeypatch.setattr(board.queue, "pause", unreachable)
    assert_problem(await board.post("api/queue/pause"), 503)


async def test_dashboard_problems_have_the_api_shape(board: Board) -> None:
    response = await board.client.get("api/jobs", params={"limit": "101"})
    assert_problem(response, 400, "limit")
    body = response.json()
    assert body["type"] == "/problems/invalid-input" and body["title"] == "Bad Request"
    assert body["status"] == 400 and body["detail"].startswith("limit: ")
    assert body["instance"] == f"{BOARD_PATH}/api/jobs"
    assert body["errors"] == [{"field": "limit", "message": body["detail"].removeprefix("limit: ")}]
    missing = (await board.client.get("api/nope")).json()
    assert missing["type"] == "/problems/not-found" and missing["title"] == "Not Found" and missing["field"] == "path"
    refused = (await board.client.get("api/overview", headers={"Authorization": basic(board.user, "wrong")})).json()
    assert refused["type"] == "/problems/unauthorized" and refused["title"] == "Unauthorized"
    assert refused["instance"] == f"{BOARD_PATH}/api/overview"


@pytest.mark.parametrize(
    ("path", "name", "low", "high"),
    [
        ("api/jobs", "page", 1, 100_000),
        ("api/jobs", "limit", 1, 100),
        ("api/audit", "page", 1, 100_000),
        ("api/audit", "limit", 1, 100),
        ("api/history", "page", 1, 100_000),
        ("api/history", "limit", 1, 100),
    ],
)
async def test_paging_parameters_keep_their_limits(board: Board, path: str, name: str, low: int, high: int) -> None:
    for fine in (low, high, ""):
        assert (await board.client.get(path, params={name: fine})).status_code == 200, (path, name, fine)
    for bad in (low - 1, high + 1, "two"):
        assert_problem(await board.client.get(path, params={name: bad}), 400, name)


async def test_pair_limit_goes_to_200_and_choices_are_named(board: Board, make_model: Any) -> None:
    model = await make_model(regions=["local"])
    pair = {"modelId": str(model.id), "region": "local"}
    assert (await board.client.get("api/certifications/pair", params={**pair, "limit": "200"})).status_code == 200
    assert_problem(await board.client.get("api/certifications/pair", params={**pair, "limit": "201"}), 400, "limit")
    state = await board.client.get("api/jobs", params={"state": "sleeping"})
    assert_problem(state, 400, "state")
    assert state.json()["detail"] == "state: must be one of waiting, active, delayed, completed, failed, paused"
    assert_problem(await board.client.get("api/history", params={"status": "GREAT"}), 400, "status")
    assert (await board.client.get("api/history", params={"status": "CERTIFIED"})).status_code == 200
    listed = await board.client.get("api/jobs", params={"state": "", "page": ""})
    assert listed.status_code == 200 and listed.json()["state"] == "waiting" and listed.json()["page"] == 1
