"""The dashboard over real HTTP: auth, cross-site refusal, and actions that change Redis and PostgreSQL."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from certq.queue import Consumer, Queue
from certq.store import Store
from certq.store.dashboard import DashboardQueries
from tests.dashboard.conftest import BOARD_PATH, Board, VerdictMaker, basic


async def failed_job(board: Board, payload: dict[str, Any] | None = None, job_id: str | None = None) -> str:
    """A job that ran once and failed for good, as a worker leaves it."""
    job = await board.queue.enqueue(payload or {"n": 1}, job_id=job_id, max_attempts=1, priority="high")
    consumer = Consumer(board.queue.redis, board.queue.config)
    claim = await consumer.claim(1)
    assert [lease.job.id for lease in claim.leases] == [job.id]
    await consumer.fail(claim.leases[0], "boom: upstream said no", final=True, category="SERVER_ERROR")
    return job.id


async def audit_actions(board: Board) -> list[tuple[str, str | None, str]]:
    page = await DashboardQueries(board.store.pool).list_audit(limit=100)
    return [(e.action, e.target, e.actor) for e in page.items if e.actor == board.user]


async def test_every_path_needs_the_board_credentials(board: Board) -> None:
    async with httpx.AsyncClient(base_url=board.url, follow_redirects=True) as anonymous:
        for path in (BOARD_PATH, f"{BOARD_PATH}/", f"{BOARD_PATH}/api/overview", f"{BOARD_PATH}/static/board.js"):
            response = await anonymous.get(path)
            assert response.status_code == 401, path
            assert response.headers["www-authenticate"].startswith("Basic realm=")
        wrong_password = {"Authorization": basic(board.user, "admin123")}
        wrong = await anonymous.get(f"{BOARD_PATH}/api/overview", headers=wrong_password)
        assert wrong.status_code == 401
        garbage = await anonymous.get(f"{BOARD_PATH}/api/overview", headers={"Authorization": "Basic %%%"})
        assert garbage.status_code == 401
        post = await anonymous.post(f"{BOARD_PATH}/api/queue/pause", headers={"X-Certq-Board": "1"})
        assert post.status_code == 401
    assert not await board.queue.is_paused()


async def test_signed_in_page_loads_with_its_static_files_under_the_mount(board: Board) -> None:
    page = await board.client.get(f"{board.url}{BOARD_PATH}", follow_redirects=True)
    assert page.status_code == 200
    assert f'<base href="{BOARD_PATH}/">' in page.text
    assert "content-security-policy" in page.headers
    for asset in ("static/board.js", "static/board.css", "static/favicon.svg"):
        response = await board.client.get(asset)
        assert response.status_code == 200, asset
        assert "cdn" not in response.text.lower() and "https://" not in response.text


async def test_state_changes_without_the_csrf_header_or_from_another_origin_are_refused(board: Board) -> None:
    no_header = await board.client.post("api/queue/pause", json={})
    assert no_header.status_code == 403
    assert "x-certq-board" in no_header.json()["detail"]
    other_origin = await board.client.post(
        "api/queue/pause", json={}, headers={"X-Certq-Board": "1", "Origin": "https://evil.example"}
    )
    assert other_origin.status_code == 403
    cross_site = await board.client.post(
        "api/queue/pause", json={}, headers={"X-Certq-Board": "1", "Sec-Fetch-Site": "cross-site"}
    )
    assert cross_site.status_code == 403
    assert not await board.queue.is_paused()
    same_origin = await board.client.post(
        "api/queue/pause", json={}, headers={"X-Certq-Board": "1", "Origin": board.url, "Sec-Fetch-Site": "same-origin"}
    )
    assert same_origin.status_code == 200
    assert await board.queue.is_paused()


async def test_overview_counts_jobs_per_state(board: Board) -> None:
    for n in range(3):
        await board.queue.enqueue({"n": n})
    await board.queue.enqueue({"n": 9}, delay_ms=60_000)
    await failed_job(board)
    data = (await board.client.get("api/overview")).json()
    assert data["counts"] == {"waiting": 3, "active": 0, "delayed": 1, "completed": 0, "failed": 1, "paused": 0}
    assert data["paused"] is False


async def test_pause_and_resume_flip_the_queue_and_are_audited(board: Board) -> None:
    await board.queue.enqueue({"n": 1})
    paused = await board.post("api/queue/pause")
    assert paused.status_code == 200 and "paused" in paused.json()["outcome"]
    assert await board.queue.is_paused()
    assert (await board.client.get("api/overview")).json()["counts"]["paused"] == 1
    listed = (await board.client.get("api/jobs", params={"state": "paused"})).json()
    assert len(listed["items"]) == 1
    assert (await board.post("api/queue/resume")).status_code == 200
    assert not await board.queue.is_paused()
    actions = await audit_actions(board)
    assert actions == [("resume", None, board.user), ("pause", None, board.user)]
    shown = (await board.client.get("api/audit")).json()["items"]
    assert [e["action"] for e in shown if e["actor"] == board.user] == ["resume", "pause"]


async def test_retry_moves_a_failed_job_back_to_waiting(board: Board) -> None:
    job_id = await failed_job(board)
    detail = (await board.client.get(f"api/jobs/{job_id}")).json()
    assert detail["job"]["state"] == "failed"
    assert detail["job"]["errors"][0]["message"] == "boom: upstream said no"
    assert detail["job"]["errors"][0]["category"] == "SERVER_ERROR"
    response = await board.post(f"api/jobs/{job_id}/retry")
    assert response.status_code == 200, response.text
    assert response.json()["audit"]["action"] == "retry"
    job = await board.queue.get(job_id)
    assert job is not None and job.state.value == "waiting"
    again = await board.post(f"api/jobs/{job_id}/retry")
    assert again.status_code == 409 and again.json()["field"] == "jobId"


async def test_retry_all_failed_moves_every_failed_job(board: Board) -> None:
    ids = [await failed_job(board) for _ in range(3)]
    response = await board.post("api/jobs/retry-failed")
    assert response.json()["outcome"].startswith("3 failed job(s)")
    states = {(await board.queue.get(i)).state.value for i in ids}  # type: ignore[union-attr]
    assert states == {"waiting"}


async def test_promote_remove_and_clean_change_redis(board: Board) -> None:
    delayed = await board.queue.enqueue({"n": 1}, delay_ms=600_000)
    assert (await board.post(f"api/jobs/{delayed.id}/promote")).status_code == 200
    assert (await board.queue.get(delayed.id)).state.value == "waiting"  # type: ignore[union-attr]
    assert (await board.post(f"api/jobs/{delayed.id}/promote")).status_code == 409

    assert (await board.post(f"api/jobs/{delayed.id}/remove")).status_code == 200
    assert await board.queue.get(delayed.id) is None
    assert (await board.post(f"api/jobs/{delayed.id}/remove")).status_code == 404

    failed = [await failed_job(board) for _ in range(2)]
    kept = (await board.post("api/queue/clean", {"state": "failed", "olderThanMinutes": 60})).json()
    assert kept["outcome"].startswith("0 failed")
    cleaned = (await board.post("api/queue/clean", {"state": "failed", "olderThanMinutes": 0})).json()
    assert cleaned["outcome"].startswith("2 failed")
    assert [await board.queue.get(i) for i in failed] == [None, None]
    entries = (await DashboardQueries(board.store.pool).list_audit(limit=100)).items
    mine = [(e.action, e.outcome.split(" ")[0]) for e in entries if e.actor == board.user]
    assert mine == [
        ("clean", "2"),
        ("clean", "0"),
        ("remove", "refused"),
        ("remove", "waiting"),
        ("promote", "refused"),
        ("promote", "delayed"),
    ]


async def test_bad_input_gets_a_problem_naming_the_field(board: Board) -> None:
    cases = [
        (await board.client.get("api/jobs", params={"state": "sleeping"}), "state"),
        (await board.client.get("api/jobs", params={"limit": "1000"}), "limit"),
        (await board.client.get("api/history", params={"status": "GREAT"}), "status"),
        (await board.client.get("api/history", params={"since": "yesterday"}), "since"),
        (await board.client.get("api/certifications/pair", params={"modelId": "x", "region": "r"}), "modelId"),
        (await board.post("api/queue/clean", {"state": "active", "olderThanMinutes": 1}), "state"),
        (await board.post("api/queue/clean", {"state": "failed", "olderThanMinutes": -1}), "olderThanMinutes"),
        (await board.client.post("api/queue/clean", content=b"{", headers={"X-Certq-Board": "1"}), "body"),
    ]
    for response, field in cases:
        assert response.status_code == 400, (field, response.text)
        assert response.headers["content-type"] == "application/problem+json"
        assert response.json()["field"] == field
    missing = await board.client.get(f"api/jobs/{uuid.uuid4()}")
    assert missing.status_code == 404


async def test_history_search_finds_runs_in_postgresql_by_id_model_region_status_and_time(
    board: Board, make_model: Any, finished_run: VerdictMaker
) -> None:
    tag = uuid.uuid4().hex[:8]
    alpha = await make_model(name=f"alpha-{tag}", regions=["eu-west-1", "us-east-1"])
    beta = await make_model(name=f"beta-{tag}", regions=["eu-west-1"])
    first = await finished_run(alpha, "eu-west-1", status="CERTIFIED")
    second = await finished_run(alpha, "us-east-1", status="FAILED", score=20, category="QUALITY_BELOW_THRESHOLD")
    third = await finished_run(beta, "eu-west-1", status="QUALITY_WARNING", score=70)

    async def ids(**params: str) -> set[str]:
        response = await board.client.get("api/history", params=params)
        assert response.status_code == 200, response.text
        return {item["id"] for item in response.json()["items"]}

    assert await ids(model=tag) == {str(first), str(second), str(third)}
    assert await ids(model=f"alpha-{tag}") == {str(first), str(second)}
    assert await ids(model=tag, region="eu-west-1") == {str(first), str(third)}
    assert await ids(model=tag, status="FAILED") == {str(second)}
    assert await ids(jobId=str(third)) == {str(third)}
    assert await ids(jobId=str(third)[:8]) == {str(third)}
    future = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
    past = (datetime.now(UTC) - timedelta(hours=1)).isoformat()
    assert await ids(model=tag, since=future) == set()
    assert await ids(model=tag, since=past, until=future) == {str(first), str(second), str(third)}
    assert await ids(model="100%_nothing") == set()


async def test_retrying_a_failed_certification_job_reopens_its_run(board: Board, store: Store, make_model: Any) -> None:
    model = await make_model(regions=["local"])
    created = await store.create_job(type="SINGLE_MODEL", pairs=[(model.id, "local")])
    run = created.certifications[0]  # type: ignore[union-attr]
    assert await store.begin_attempt(run.id, 1)
    assert await store.record_attempt_failure(run.id, 1, "SERVER_ERROR", "503 from upstream", final=True)
    payload = {"certificationId": str(run.id), "modelId": str(model.id), "region": "local"}
    await failed_job(board, payload, job_id=str(run.id))

    detail = (await board.client.get(f"api/jobs/{run.id}")).json()
    assert detail["certification"]["status"] == "FAILED"
    assert detail["job"]["modelName"] == model.name
    assert (await board.post(f"api/jobs/{run.id}/retry")).status_code == 200

    reopened = await store.get_certification(run.id)
    assert reopened is not None and reopened.status == "QUEUED"
    parent = await store.get_job(run.job_id)
    assert parent is not None and parent.processed_models == 0 and parent.failure_count == 0
    assert parent.status in ("QUEUED", "PROCESSING")
    # The retried attempt (queue attempts only grow) may run and finish it.
    assert await store.begin_attempt(run.id, 2)


MATRIX = "api/certifications/matrix"


async def test_matrix_shows_latest_verdict_per_model_and_region_and_pair_history_in_order(
    board: Board, make_model: Any, finished_run: VerdictMaker
) -> None:
    model = await make_model(regions=["eu-west-1", "us-east-1"])
    await finished_run(model, "eu-west-1", status="FAILED", score=40, latency_ms=300)
    latest = await finished_run(model, "eu-west-1", status="CERTIFIED", score=95, latency_ms=150)
    matrix = (await board.client.get("api/certifications/matrix")).json()
    assert {"eu-west-1", "us-east-1"} <= set(matrix["regions"])
    cells = [c for c in matrix["cells"] if c["modelId"] == str(model.id)]
    assert cells == [
        {
            "modelId": str(model.id),
            "region": "eu-west-1",
            "id": str(latest),
            "status": "CERTIFIED",
            "standing": "CERTIFIED",
            "expiresSoon": False,
            "validUntil": cells[0]["validUntil"],
            "recertification": None,
            "rating": "A",
            "score": 95.0,
            "completedAt": cells[0]["completedAt"],
            "verified": [],
            "failedCapabilities": [],
        }
    ]
    assert datetime.fromisoformat(cells[0]["validUntil"]) - datetime.fromisoformat(cells[0]["completedAt"]) == (
        timedelta(days=7)
    )
    await board.store.pool.execute(
        "UPDATE certifications SET valid_until = now() + interval '2 hours' WHERE id = $1", latest
    )
    [soon] = [
        c for c in (await board.client.get("api/certifications/matrix")).json()["cells"] if c["id"] == str(latest)
    ]
    assert soon["standing"] == "CERTIFIED" and soon["expiresSoon"] is True
    await board.store.pool.execute(
        "UPDATE certifications SET valid_until = now() - interval '1 second' WHERE id = $1", latest
    )
    [gone] = [
        c for c in (await board.client.get("api/certifications/matrix")).json()["cells"] if c["id"] == str(latest)
    ]
    assert (gone["standing"], gone["status"], gone["expiresSoon"]) == ("EXPIRED", "CERTIFIED", False)
    pair = (
        await board.client.get("api/certifications/pair", params={"modelId": str(model.id), "region": "eu-west-1"})
    ).json()
    assert [r["status"] for r in pair["runs"]] == ["FAILED", "CERTIFIED"]
    assert [r["latencyP50Ms"] for r in pair["runs"]] == [300, 150]
    assert pair["runs"][1]["testResults"][0]["name"] == "basic-chat"


async def test_matrix_carries_declared_capabilities_and_what_each_verdict_verified_until_it_expires(
    board: Board, make_model: Any, finished_run: VerdictMaker
) -> None:
    model = await make_model(regions=["eu-west-1"])
    await board.store.pool.execute(
        """UPDATE models SET capabilities = '{"tools": true, "contextWindow": 4096}' WHERE id = $1""", model.id
    )
    run = await finished_run(
        model,
        "eu-west-1",
        capabilities={"verified": ["tools"], "failed": ["contextWindow"], "notDeclared": ["structuredOutput"]},
    )
    matrix = (await board.client.get(MATRIX)).json()
    [row] = [m for m in matrix["models"] if m["id"] == str(model.id)]
    assert row["capabilities"]["tools"] is True and row["capabilities"]["contextWindow"] == 4096
    [cell] = [c for c in matrix["cells"] if c["id"] == str(run)]
    assert (cell["verified"], cell["failedCapabilities"]) == (["tools"], ["contextWindow"])
    await board.store.pool.execute(
        "UPDATE certifications SET valid_until = now() - interval '1 second' WHERE id = $1", run
    )
    [gone] = [c for c in (await board.client.get(MATRIX)).json()["cells"] if c["id"] == str(run)]
    assert gone["standing"] == "EXPIRED" and gone["verified"] == []  # an expired verdict vouches for nothing


async def test_certify_without_the_apis_logic_answers_503(board: Board) -> None:
    response = await board.post("api/certify", {"mode": "all", "regions": ["local"]})
    assert response.status_code == 503


async def test_workers_lists_live_consumers_with_their_heartbeat(board: Board) -> None:
    consumer = Consumer(board.queue.redis, board.queue.config, consumer_id="worker-test-1")
    await consumer.heartbeat([], {"concurrency": 3, "active": 0, "health_port": 3002})
    workers = (await board.client.get("api/workers")).json()["workers"]
    assert [(w["id"], w["concurrency"], w["health_port"]) for w in workers] == [("worker-test-1", 3, 3002)]


@pytest.mark.parametrize("queue_type", [Queue])
def test_board_queue_protocol_matches_the_queue(queue_type: type) -> None:
    from certq.dashboard.ports import BoardQueue

    missing = [name for name in dir(BoardQueue) if not name.startswith("_") and not hasattr(queue_type, name)]
    assert missing == []


async def test_removing_or_cancelling_a_certification_job_cancels_its_run(
    board: Board, store: Store, make_model: Any
) -> None:
    model = await make_model(regions=["local", "eu-west-1"])
    created = await store.create_job(type="MULTIPLE_MODELS", pairs=[(model.id, "local"), (model.id, "eu-west-1")])
    first, second = created.certifications  # type: ignore[union-attr]
    for run in (first, second):
        await board.queue.enqueue(
            {"certificationId": str(run.id), "modelId": str(model.id), "region": run.region}, job_id=str(run.id)
        )

    removed = await board.post(f"api/jobs/{first.id}/remove")
    assert "CANCELLED" in removed.json()["outcome"]
    assert await board.queue.get(str(first.id)) is None
    cancelled = await board.post(f"api/jobs/{second.id}/cancel")
    assert cancelled.status_code == 200 and cancelled.json()["outcome"].startswith("job cancelled before it ran")
    for run in (first, second):
        record = await store.get_certification(run.id)
        assert record is not None and record.status == "CANCELLED"
    parent = await store.get_job(created.job.id)  # type: ignore[union-attr]
    assert parent is not None and parent.status == "CANCELLED" and parent.cancelled_count == 2
    detail = (await board.client.get(f"api/jobs/{second.id}")).json()
    assert detail["certification"]["status"] == "CANCELLED" and detail["certification"]["modelName"] == model.name


async def test_paused_list_is_empty_while_the_queue_runs(board: Board) -> None:
    await board.queue.enqueue({"n": 1})
    assert (await board.client.get("api/jobs", params={"state": "paused"})).json()["items"] == []
    assert len((await board.client.get("api/jobs", params={"state": "waiting"})).json()["items"]) == 1


def test_id_bounds_cover_exactly_the_uuids_starting_with_the_prefix() -> None:
    from certq.store.dashboard import id_bounds

    run = uuid.UUID("586c4254-7009-498d-a673-e7d929594e2f")
    low, high = id_bounds("586C4254-70")  # type: ignore[misc]
    assert low <= run <= high
    assert str(low) == "586c4254-7000-0000-0000-000000000000" and str(high) == "586c4254-70ff-ffff-ffff-ffffffffffff"
    assert id_bounds(str(run)) == (run, run)
    assert id_bounds("xyz") is None and id_bounds("") is None and id_bounds("0" * 33) is None


async def test_static_files_are_compressed_for_browsers_that_accept_it(board: Board) -> None:
    response = await board.client.get("static/board.js", headers={"Accept-Encoding": "gzip"})
    assert response.headers["content-encoding"] == "gzip"
    assert int(response.headers["content-length"]) < len(response.content) / 2


async def test_a_redis_outage_answers_503_problems_not_500(
    store: Store, queue_config: Any, board_settings: Any, board_user: str
) -> None:
    import redis.asyncio as aioredis

    from certq.dashboard import StaticDeps
    from certq.embedded import free_port
    from tests.dashboard.conftest import PASSWORD, serve_board

    dead = aioredis.from_url(f"redis://127.0.0.1:{free_port()}/0", socket_connect_timeout=0.5)
    server, url = await serve_board(board_settings, StaticDeps(queue=Queue(dead, queue_config), store=store))
    try:
        async with httpx.AsyncClient(
            base_url=f"{url}{BOARD_PATH}/", timeout=10, headers={"Authorization": basic(board_user, PASSWORD)}
        ) as client:
            response = await client.get("api/overview")
            assert response.status_code == 503
            assert response.headers["content-type"] == "application/problem+json"
            assert response.json()["detail"].startswith("Redis is not answering")
            history = await client.get("api/history")
            assert history.status_code == 200
    finally:
        await server.stop()
        await dead.aclose()


async def test_a_cancelled_job_is_not_retried(board: Board) -> None:
    job = await board.queue.enqueue({"n": 1})
    assert await board.queue.cancel(job.id) == "removed"
    response = await board.post(f"api/jobs/{job.id}/retry")
    assert response.status_code == 409 and "cancelled" in response.json()["detail"]
    assert (await board.queue.get(job.id)).state.value == "failed"  # type: ignore[union-attr]


async def _failed_run_with_a_newer_live_one(board: Board, store: Store, make_model: Any) -> tuple[Any, Any]:
    """A FAILED run (its queue job failed too) and a newer run of the same model+region that is QUEUED."""
    model = await make_model(regions=["local"])
    created = await store.create_job(type="SINGLE_MODEL", pairs=[(model.id, "local")])
    old = created.certifications[0]  # type: ignore[union-attr]
    assert await store.begin_attempt(old.id, 1)
    assert await store.record_attempt_failure(old.id, 1, "SERVER_ERROR", "503 from upstream", final=True)
    await failed_job(
        board, {"certificationId": str(old.id), "modelId": str(model.id), "region": "local"}, job_id=str(old.id)
    )
    newer = await store.create_job(type="SINGLE_MODEL", pairs=[(model.id, "local")])
    live = newer.certifications[0]  # type: ignore[union-attr]
    return old, live


async def test_retrying_a_failed_run_superseded_by_a_live_one_is_a_409_and_changes_nothing(
    board: Board, store: Store, make_model: Any
) -> None:
    old, live = await _failed_run_with_a_newer_live_one(board, store, make_model)

    response = await board.post(f"api/jobs/{old.id}/retry")
    assert response.status_code == 409, response.text
    assert response.headers["content-type"] == "application/problem+json"
    body = response.json()
    assert body["field"] == "jobId"
    assert "a newer certification of this model+region is already queued or running" in body["detail"]
    assert str(live.id) in body["detail"]
    # PostgreSQL and Redis still agree: the run is FAILED and its job is failed.
    still = await store.get_certification(old.id)
    assert still is not None and still.status == "FAILED"
    assert (await board.queue.get(str(old.id))).state.value == "failed"  # type: ignore[union-attr]
    newer = await store.get_certification(live.id)
    assert newer is not None and newer.status == "QUEUED"
    parent = await store.get_job(old.job_id)
    assert parent is not None and parent.failure_count == 1
    assert ("retry", str(old.id), board.user) in await audit_actions(board)


async def test_retry_all_leaves_superseded_runs_failed_in_both_stores(
    board: Board, store: Store, make_model: Any
) -> None:
    old, live = await _failed_run_with_a_newer_live_one(board, store, make_model)
    plain = await failed_job(board)

    response = await board.post("api/jobs/retry-failed")
    assert response.status_code == 200, response.text
    assert response.json()["audit"]["detail"]["count"] == 1
    assert "1 left failed" in response.json()["outcome"]
    assert (await board.queue.get(plain)).state.value == "waiting"  # type: ignore[union-attr]
    still = await store.get_certification(old.id)
    assert still is not None and still.status == "FAILED"
    assert (await board.queue.get(str(old.id))).state.value == "failed"  # type: ignore[union-attr]


async def test_a_huge_payload_is_sent_as_a_bounded_preview(board: Board) -> None:
    job = await board.queue.enqueue({"modelId": "m", "blob": "x" * 5_000_000})
    listed = await board.client.get("api/jobs", params={"state": "waiting"})
    detail = await board.client.get(f"api/jobs/{job.id}")
    for response in (listed, detail):
        assert response.status_code == 200 and len(response.content) < 64 * 1024
    payload = detail.json()["payload"] if "payload" in detail.json() else detail.json()["job"]["payload"]
    assert payload["truncated"] is True and payload["bytes"] > 5_000_000 and len(payload["preview"]) <= 1024
