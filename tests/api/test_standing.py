"""GET /standing: each active model x region pair's standing now, with an ETag that moves only with it."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from typing import Any

import httpx

from tests.api.conftest import CreateModel

PATH = "/api/certification-queue/standing"
CERTIFIED = {
    "status": "CERTIFIED",
    "passed": True,
    "score": 93.0,
    "rating": "A",
    "durationMs": 800,
    "metrics": {"modelIdentity": {"finding": "matched", "expected": "x", "reported": ["x-2024-08-06"]}},
}


async def _finish(store: Any, model_id: str, region: str, verdict: dict[str, Any], validity_s: int = 7 * 86_400) -> Any:
    created = await store.create_job(type="SINGLE_MODEL", pairs=[(uuid.UUID(model_id), region)])
    run = created.certifications[0]
    assert await store.begin_attempt(run.id, 1)
    assert await store.finish_certification(run.id, 1, verdict, validity_s=validity_s)
    return run.id


async def _standing(client: httpx.AsyncClient, **params: str) -> httpx.Response:
    return await client.get(PATH, params=params)


async def test_a_new_model_is_never_certified_in_each_region_it_offers(
    client: httpx.AsyncClient, create_model: CreateModel
) -> None:
    model = await create_model(regions=["local", "edge"])
    response = await _standing(client, modelId=model["id"])
    assert response.status_code == 200, response.text
    entries = response.json()["standing"]
    assert [(e["region"], e["standing"], e["recertification"]) for e in entries] == [
        ("edge", "NEVER_CERTIFIED", None),
        ("local", "NEVER_CERTIFIED", None),
    ]
    assert entries[0]["identity"]["apiModelId"] == model["apiModelId"]


async def test_a_verdict_stands_until_valid_until_then_the_pair_is_expired(
    client: httpx.AsyncClient, create_model: CreateModel, store: Any
) -> None:
    model = await create_model(regions=["local"])
    run_id = await _finish(store, model["id"], "local", CERTIFIED, validity_s=3600)
    [entry] = (await _standing(client, modelId=model["id"])).json()["standing"]
    assert entry["standing"] == "CERTIFIED" and entry["score"] == 93.0 and entry["rating"] == "A"
    assert entry["certificationId"] == str(run_id) and entry["identity"]["reported"] == ["x-2024-08-06"]
    certified = datetime.fromisoformat(entry["certifiedAt"])
    assert datetime.fromisoformat(entry["validUntil"]) - certified == timedelta(hours=1)
    await store.pool.execute(
        "UPDATE certifications SET valid_until = now() - interval '1 second' WHERE id = $1", run_id
    )
    [expired] = (await _standing(client, modelId=model["id"])).json()["standing"]
    assert expired["standing"] == "EXPIRED" and expired["verdict"] == "CERTIFIED"


async def test_the_etag_changes_only_when_a_standing_changes_and_a_match_is_304(
    client: httpx.AsyncClient, create_model: CreateModel, store: Any
) -> None:
    model = await create_model(regions=["local"])
    first = await _standing(client, modelId=model["id"])
    again = await _standing(client, modelId=model["id"])
    etag = first.headers["etag"]
    assert etag == again.headers["etag"] and etag.startswith('"')
    unchanged = await client.get(PATH, params={"modelId": model["id"]}, headers={"If-None-Match": etag})
    assert unchanged.status_code == 304 and unchanged.content == b"" and unchanged.headers["etag"] == etag
    weak = await client.get(PATH, params={"modelId": model["id"]}, headers={"If-None-Match": f'"x", W/{etag}'})
    assert weak.status_code == 304
    queued = await store.create_job(type="SINGLE_MODEL", pairs=[(uuid.UUID(model["id"]), "local")])
    running = await client.get(PATH, params={"modelId": model["id"]}, headers={"If-None-Match": etag})
    assert running.status_code == 200 and running.headers["etag"] != etag
    assert running.json()["standing"][0]["recertification"] == "QUEUED"
    run = queued.certifications[0]
    assert await store.begin_attempt(run.id, 1)
    assert (await _standing(client, modelId=model["id"])).json()["standing"][0]["recertification"] == "RUNNING"
    assert await store.finish_certification(run.id, 1, CERTIFIED)
    done = await _standing(client, modelId=model["id"])
    assert done.json()["standing"][0]["standing"] == "CERTIFIED" and done.headers["etag"] not in (
        etag,
        running.headers["etag"],
    )


async def test_filters_narrow_to_one_region_and_bad_filters_name_the_field(
    client: httpx.AsyncClient, create_model: CreateModel
) -> None:
    model = await create_model(regions=["local", "edge"])
    only = (await _standing(client, modelId=model["id"], region="edge")).json()["standing"]
    assert [e["region"] for e in only] == ["edge"]
    bad = await _standing(client, modelId="not-a-uuid")
    assert bad.status_code == 400 and bad.json()["field"] == "modelId"


async def test_a_deactivated_model_has_no_standing(client: httpx.AsyncClient, create_model: CreateModel) -> None:
    model = await create_model(regions=["local"])
    assert (await client.delete(f"/api/models/{model['id']}")).status_code in (200, 204)
    assert (await _standing(client, modelId=model["id"])).json()["standing"] == []


def _with_capabilities(verified: list[str], failed: tuple[str, ...] = ()) -> dict[str, Any]:
    names = ("tools", "structuredOutput", "contextWindow", "tokenAccounting")
    found = {"verified": verified, "failed": list(failed)}
    found["notDeclared"] = [n for n in names if n not in verified and n not in failed]
    return {**CERTIFIED, "capabilities": found}


async def test_the_capability_filter_keeps_pairs_whose_standing_verdict_verified_every_named_one(
    client: httpx.AsyncClient, create_model: CreateModel, store: Any
) -> None:
    both = await create_model(regions=["local"])
    tools_only = await create_model(regions=["local"])
    failed_tools = await create_model(regions=["local"])
    never = await create_model(regions=["local"])
    await _finish(store, both["id"], "local", _with_capabilities(["tools", "structuredOutput"]))
    await _finish(store, tools_only["id"], "local", _with_capabilities(["tools"]))
    await _finish(store, failed_tools["id"], "local", _with_capabilities(["tokenAccounting"], ("tools",)))
    ours = {m["id"] for m in (both, tools_only, failed_tools, never)}

    async def kept(*query: tuple[str, str]) -> set[str]:
        response = await client.get(PATH, params=list(query))
        assert response.status_code == 200, response.text
        return {e["modelId"] for e in response.json()["standing"]} & ours

    assert await kept() == ours
    assert await kept(("capability", "tools")) == {both["id"], tools_only["id"]}
    assert await kept(("capability", "tools,structuredOutput")) == {both["id"]}
    assert await kept(("capability", "tools"), ("capability", "structuredOutput")) == {both["id"]}
    assert await kept(("capability", "tokenAccounting")) == {failed_tools["id"]}
    [entry] = (await client.get(PATH, params={"modelId": failed_tools["id"]})).json()["standing"]
    assert entry["capabilities"] == {
        "verified": ["tokenAccounting"],
        "failed": ["tools"],
        "notDeclared": ["structuredOutput", "contextWindow"],
    }
    [unprobed] = (await client.get(PATH, params={"modelId": never["id"]})).json()["standing"]
    assert unprobed["capabilities"] is None


async def test_a_failed_verdict_vouches_for_no_capability_it_verified(
    client: httpx.AsyncClient, create_model: CreateModel, store: Any
) -> None:
    model = await create_model(regions=["local"])
    failed = {**_with_capabilities(["tokenAccounting"], ("tools",)), "status": "FAILED", "passed": False, "score": 59.0}
    failed |= {"rating": "F", "errorCategory": "QUALITY_BELOW_THRESHOLD", "errorMessage": "tools not offered"}
    await _finish(store, model["id"], "local", failed)
    query = {"modelId": model["id"], "capability": "tokenAccounting"}
    assert (await _standing(client, **query)).json()["standing"] == []
    [entry] = (await _standing(client, modelId=model["id"])).json()["standing"]
    assert entry["standing"] == "FAILED" and entry["capabilities"]["verified"] == ["tokenAccounting"]  # still shown


async def test_an_expired_verdict_no_longer_counts_as_verifying_a_capability(
    client: httpx.AsyncClient, create_model: CreateModel, store: Any
) -> None:
    model = await create_model(regions=["local"])
    run_id = await _finish(store, model["id"], "local", _with_capabilities(["tools"]))
    query = {"modelId": model["id"], "capability": "tools"}
    assert len((await client.get(PATH, params=query)).json()["standing"]) == 1
    await store.pool.execute(
        "UPDATE certifications SET valid_until = now() - interval '1 second' WHERE id = $1", run_id
    )
    assert (await client.get(PATH, params=query)).json()["standing"] == []


async def test_a_filtered_etag_moves_only_when_a_filtered_standing_changes(
    client: httpx.AsyncClient, create_model: CreateModel, store: Any
) -> None:
    model = await create_model(regions=["local"])
    other = await create_model(regions=["local"])
    await _finish(store, model["id"], "local", _with_capabilities(["tools"]))
    query = {"modelId": model["id"], "capability": "tools"}
    first = await client.get(PATH, params=query)
    # A verdict elsewhere (another model) changes nothing this filtered answer shows.
    await _finish(store, other["id"], "local", _with_capabilities(["tools"]))
    again = await client.get(PATH, params=query)
    assert again.headers["etag"] == first.headers["etag"]
    assert (await client.get(PATH, params=query, headers={"If-None-Match": first.headers["etag"]})).status_code == 304
    # A new verdict that no longer verifies tools drops the pair: the answer and its ETag change.
    await _finish(store, model["id"], "local", _with_capabilities([], ("tools",)))
    changed = await client.get(PATH, params=query)
    assert changed.json()["standing"] == [] and changed.headers["etag"] != first.headers["etag"]


async def test_an_unknown_capability_or_a_repeated_other_parameter_is_a_400_naming_it(
    client: httpx.AsyncClient,
) -> None:
    unknown = await client.get(PATH, params={"capability": "tools,telepathy"})
    assert unknown.status_code == 400 and unknown.json()["field"] == "capability"
    assert "telepathy" in unknown.json()["detail"]
    twice = await client.get(PATH, params=[("region", "a"), ("region", "b")])
    assert twice.status_code == 400 and twice.json()["field"] == "region"
    long = await client.get(PATH, params={"capability": "tools," * 60})
    assert long.status_code == 400 and long.json()["field"] == "capability"


async def test_a_certification_answer_shows_what_its_verdict_found_of_the_capabilities(
    client: httpx.AsyncClient, create_model: CreateModel, store: Any
) -> None:
    model = await create_model(regions=["local"])
    verdict = _with_capabilities(["tools"], ("structuredOutput",))
    await _finish(store, model["id"], "local", verdict)
    response = await client.get("/api/certification-queue/certifications", params={"modelId": model["id"]})
    assert response.status_code == 200, response.text
    [certification] = response.json()["certifications"]
    assert certification["capabilities"] == verdict["capabilities"]
