"""/api/certification-queue: recorded in PostgreSQL, enqueued in Redis, never twice, never a 500."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import httpx
import pytest

from tests.api.conftest import CreateModel

BASE = "/api/certification-queue"


async def test_certify_model_records_then_enqueues_one_job(
    client: httpx.AsyncClient, create_model: CreateModel, api_server: Any
) -> None:
    model = await create_model(regions=["local"])
    response = await client.post(f"{BASE}/certify-model", json={"modelId": model["id"], "region": "local"})
    assert response.status_code == 201, response.text
    body = response.json()
    assert body["status"] == "QUEUED" and body["modelId"] == model["id"] and body["region"] == "local"
    job = await api_server.services.queue.get(body["certificationId"])
    assert job is not None and job.state.value == "waiting"
    assert job.payload == {
        "certificationId": body["certificationId"],
        "jobId": body["jobId"],
        "modelId": model["id"],
        "region": "local",
    }
    assert job.group == "local" and job.dedupe_key == f"{model['id']}:local"
    assert job.max_attempts == api_server.settings.max_attempts


async def test_certifying_a_queued_model_region_returns_that_job(
    client: httpx.AsyncClient, create_model: CreateModel, api_server: Any
) -> None:
    model = await create_model(regions=["local"])
    first = await client.post(f"{BASE}/certify-model", json={"modelId": model["id"], "region": "local"})
    again = await client.post(f"{BASE}/certify", json={"modelId": model["id"], "region": "local", "priority": "high"})
    assert first.status_code == 201 and again.status_code == 200
    assert again.json()["jobId"] == first.json()["jobId"] and again.json()["existing"] is True
    counts = await api_server.services.queue.counts()
    assert counts["waiting"] == 1


async def test_idempotency_key_replays_the_first_answer(client: httpx.AsyncClient, create_model: CreateModel) -> None:
    model = await create_model(regions=["a", "b"])
    key = {"Idempotency-Key": f"retry-{uuid.uuid4()}"}
    body = {"modelIds": [model["id"]], "regions": ["a", "b"]}
    first = await client.post(f"{BASE}/certify-multiple", json=body, headers=key)
    second = await client.post(f"{BASE}/certify-multiple", json=body, headers=key)
    assert first.status_code == second.status_code == 201
    assert first.json() == second.json() and first.json()["totalJobs"] == 2
    reused = await client.post(f"{BASE}/certify-multiple", json={**body, "regions": ["a"]}, headers=key)
    assert reused.status_code == 422 and reused.json()["field"] == "Idempotency-Key"


async def test_certify_multiple_skips_live_pairs_and_reports_them(
    client: httpx.AsyncClient, create_model: CreateModel
) -> None:
    one = await create_model(regions=["a", "b"])
    two = await create_model(regions=["a", "b"])
    single = await client.post(f"{BASE}/certify-model", json={"modelId": one["id"], "region": "a"})
    batch = await client.post(
        f"{BASE}/certify-multiple", json={"modelIds": [one["id"], two["id"]], "regions": ["a", "b"], "priority": "low"}
    )
    assert batch.status_code == 201, batch.text
    body = batch.json()
    assert body["totalJobs"] == 3 and body["status"] == "QUEUED" and len(body["certificationIds"]) == 3
    [skipped] = body["skipped"]
    assert skipped["jobId"] == single.json()["jobId"] and skipped["region"] == "a"


async def test_certify_all_takes_every_active_model_offering_the_region(
    client: httpx.AsyncClient, create_model: CreateModel
) -> None:
    region = f"r-{uuid.uuid4().hex[:8]}"
    offering = await create_model(regions=[region])
    await create_model(regions=[region], isActive=False)
    await create_model(regions=["elsewhere"])
    response = await client.post(f"{BASE}/certify-all", json={"regions": [region]})
    assert response.status_code == 201, response.text
    assert response.json()["modelIds"] == [offering["id"]] and response.json()["totalJobs"] == 1
    nobody = await client.post(f"{BASE}/certify-all", json={"regions": [f"none-{uuid.uuid4().hex[:6]}"]})
    assert nobody.status_code == 422 and nobody.json()["field"] == "regions"


async def test_job_detail_names_each_model(client: httpx.AsyncClient, create_model: CreateModel) -> None:
    model = await create_model(regions=["a", "b"])
    created = await client.post(f"{BASE}/certify-multiple", json={"modelIds": [model["id"]], "regions": ["a", "b"]})
    job = (await client.get(f"{BASE}/jobs/{created.json()['jobId']}")).json()
    assert job["status"] == "QUEUED" and job["totalModels"] == 2 and job["processedModels"] == 0
    assert job["type"] == "MULTIPLE_MODELS" and job["progress"] == 0
    assert {(c["name"], c["apiModelId"], c["model"]["name"]) for c in job["certifications"]} == {
        (model["name"], model["apiModelId"], model["name"])
    }
    assert {c["region"] for c in job["certifications"]} == {"a", "b"}


async def test_history_and_certifications_page_and_filter(client: httpx.AsyncClient, create_model: CreateModel) -> None:
    model = await create_model(regions=["a", "b", "c"])
    for region in ("a", "b", "c"):
        await client.post(f"{BASE}/certify-model", json={"modelId": model["id"], "region": region})
    page = (await client.get(f"{BASE}/history", params={"limit": 2, "type": "SINGLE_MODEL"})).json()
    assert len(page["jobs"]) == 2 and page["pagination"]["total"] >= 3 and page["pagination"]["totalPages"] >= 2
    certs = (await client.get(f"{BASE}/certifications", params={"modelId": model["id"], "status": "QUEUED"})).json()
    assert certs["pagination"]["total"] == 3
    assert {c["region"] for c in certs["certifications"]} == {"a", "b", "c"}
    one = (await client.get(f"{BASE}/certifications", params={"modelId": model["id"], "region": "b"})).json()
    assert [c["region"] for c in one["certifications"]] == ["b"]


async def test_stats_join_queue_counts_and_database_counts(
    client: httpx.AsyncClient, create_model: CreateModel
) -> None:
    region = f"r-{uuid.uuid4().hex[:8]}"
    model = await create_model(regions=[region])
    await client.post(f"{BASE}/certify-model", json={"modelId": model["id"], "region": region})
    stats = (await client.get(f"{BASE}/stats")).json()
    assert stats["queueAvailable"] is True and stats["queue"]["waiting"] == 1
    assert set(stats["queue"]) >= {"waiting", "active", "completed", "failed", "delayed"}
    assert stats["certificationsByStatus"]["QUEUED"] >= 1
    assert {"region": region, "status": "QUEUED", "count": 1} in stats["certificationsByRegion"]


async def test_regions_lists_aws_defaults_and_regions_in_use(
    client: httpx.AsyncClient, create_model: CreateModel
) -> None:
    region = f"r-{uuid.uuid4().hex[:8]}"
    await create_model(regions=[region])
    regions = (await client.get(f"{BASE}/regions")).json()
    assert regions[0]["id"] == "us-east-1" and regions[0]["name"] == "US East (N. Virginia)"
    assert {"id": region, "name": region, "activeModels": 1} in regions


# --- bad input ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "field", "status"),
    [
        (b"{not json", "body", 400),
        (b"", "body", 400),
        (b"[]", "body", 400),
        (b'{"modelId": "nope", "region": "local"}', "modelId", 400),
        (b'{"modelId": 42, "region": "local"}', "modelId", 400),
        (b'{"modelId": "00000000-0000-0000-0000-000000000000"}', "region", 400),
        (b'{"modelId": "00000000-0000-0000-0000-000000000000", "region": "local", "extra": 1}', "extra", 400),
        (
            b'{"modelId": "00000000-0000-0000-0000-000000000000", "region": "local", "priority": "urgent"}',
            "priority",
            400,
        ),
        (b'{"modelId": "00000000-0000-0000-0000-000000000000", "region": "local"}', "modelId", 404),
        (b'{"modelId": "00000000-0000-0000-0000-000000000000", "region": "lo\\u0000cal"}', "region", 400),
        (b'{"modelId": "00000000-0000-0000-0000-000000000000", "region": "\\ud800"}', "body", 400),
    ],
)
async def test_bad_certify_bodies_are_problems_naming_the_field(
    client: httpx.AsyncClient, raw: bytes, field: str, status: int
) -> None:
    response = await client.post(f"{BASE}/certify-model", content=raw, headers={"Content-Type": "application/json"})
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["field"] == field


async def test_inactive_models_and_regions_not_offered_are_not_certifiable(
    client: httpx.AsyncClient, create_model: CreateModel
) -> None:
    inactive = await create_model(isActive=False)
    response = await client.post(f"{BASE}/certify-model", json={"modelId": inactive["id"], "region": "local"})
    assert response.status_code == 422 and response.json()["field"] == "modelId"
    active = await create_model(regions=["local"])
    response = await client.post(f"{BASE}/certify-model", json={"modelId": active["id"], "region": "us-east-1"})
    assert response.status_code == 422 and response.json()["field"] == "region"
    response = await client.post(
        f"{BASE}/certify-multiple", json={"modelIds": [active["id"]], "regions": ["local", "mars"]}
    )
    assert response.status_code == 422 and response.json()["field"] == "regions[1]"
    response = await client.post(
        f"{BASE}/certify-multiple", json={"modelIds": [active["id"], str(uuid.uuid4())], "regions": ["local"]}
    )
    assert response.status_code == 404 and response.json()["field"] == "modelIds[1]"


async def test_oversized_and_non_json_bodies_are_refused(client: httpx.AsyncClient) -> None:
    huge = b'{"regions": ["' + b"a" * 70_000 + b'"]}'
    response = await client.post(f"{BASE}/certify-all", content=huge, headers={"Content-Type": "application/json"})
    assert response.status_code == 413 and response.json()["field"] == "body"
    response = await client.post(
        f"{BASE}/certify-all", content=b"regions=a", headers={"Content-Type": "application/x-www-form-urlencoded"}
    )
    assert response.status_code == 415


@pytest.mark.parametrize(
    ("path", "params", "field"),
    [
        ("history", {"limit": "101"}, "limit"),
        ("history", {"limit": "0"}, "limit"),
        ("history", {"page": "zero"}, "page"),
        ("history", {"status": "PAUSED"}, "status"),
        ("history", {"type": "RECERTIFY"}, "type"),
        ("certifications", {"limit": "1000"}, "limit"),
        ("certifications", {"modelId": "abc"}, "modelId"),
        ("certifications", {"status": "COMPLETED"}, "status"),
        ("certifications", {"region": "us\x00east"}, "region"),
    ],
)
async def test_bad_query_parameters_name_the_parameter(
    client: httpx.AsyncClient, path: str, params: dict[str, str], field: str
) -> None:
    response = await client.get(f"{BASE}/{path}", params=params)
    assert response.status_code == 400, response.text
    assert response.json()["field"] == field


@pytest.mark.parametrize("method", ["GET", "DELETE"])
async def test_job_ids_must_be_uuids_and_exist(client: httpx.AsyncClient, method: str) -> None:
    bad = await client.request(method, f"{BASE}/jobs/123")
    assert bad.status_code == 400 and bad.json()["field"] == "jobId"
    missing = await client.request(method, f"{BASE}/jobs/{uuid.uuid4()}")
    assert missing.status_code == 404 and missing.json()["field"] == "jobId"


async def test_unknown_routes_and_methods_are_problems(client: httpx.AsyncClient) -> None:
    response = await client.get("/api/nothing-here")
    assert response.status_code == 404 and response.headers["content-type"] == "application/problem+json"
    response = await client.put(f"{BASE}/certify-model", json={})
    assert response.status_code == 405 and response.headers["content-type"] == "application/problem+json"


async def test_racing_certify_requests_create_one_certification(
    client: httpx.AsyncClient, create_model: CreateModel, api_server: Any
) -> None:
    model = await create_model(regions=["local"])
    body = {"modelId": model["id"], "region": "local"}
    responses = await asyncio.gather(*(client.post(f"{BASE}/certify-model", json=body) for _ in range(12)))
    assert sorted(r.status_code for r in responses) == [200] * 11 + [201]
    assert len({r.json()["certificationId"] for r in responses}) == 1
    assert (await api_server.services.queue.counts())["waiting"] == 1
