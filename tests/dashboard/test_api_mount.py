"""The dashboard as the API serves it: its own basic auth, and certify through the API's own logic."""

from __future__ import annotations

from typing import Any

import httpx

from certq.store.dashboard import DashboardQueries
from tests.dashboard.conftest import BOARD_PATH, PASSWORD, Api, basic


async def test_the_api_serves_the_board_behind_basic_auth_not_bearer_tokens(api: Api) -> None:
    async with httpx.AsyncClient(base_url=api.url, follow_redirects=True) as client:
        anonymous = await client.get(BOARD_PATH)
        assert anonymous.status_code == 401
        assert anonymous.headers["www-authenticate"].startswith("Basic")
        bearer = await client.get(f"{BOARD_PATH}/api/overview", headers={"Authorization": f"Bearer {api.token}"})
        assert bearer.status_code == 401
    page = await api.board.get(f"{api.url}{BOARD_PATH}/")
    assert page.status_code == 200 and "certq" in page.text


async def test_the_board_asks_for_credentials_before_it_redirects_to_its_slash_path(api: Api) -> None:
    async with httpx.AsyncClient(base_url=api.url, follow_redirects=False) as client:
        for method in ("GET", "HEAD"):
            anonymous = await client.request(method, BOARD_PATH)
            assert anonymous.status_code == 401, method
            assert anonymous.headers["www-authenticate"].startswith("Basic realm=")
        wrong = await client.get(BOARD_PATH, headers={"Authorization": basic(api.user, "admin123")})
        assert wrong.status_code == 401
        signed_in = {"Authorization": basic(api.user, PASSWORD), "Host": "evil.test"}
        for method in ("GET", "HEAD"):
            redirect = await client.request(method, f"{BOARD_PATH}?view=1", headers=signed_in)
            assert redirect.status_code == 307, method
            assert redirect.headers["location"] == f"{BOARD_PATH}/?view=1"


async def test_other_slash_redirects_of_the_api_are_not_held_for_a_login(api: Api) -> None:
    async with httpx.AsyncClient(base_url=api.url, follow_redirects=False) as client:
        response = await client.get("/api/models/", headers={"Authorization": f"Bearer {api.token}"})
        post = await client.post(BOARD_PATH, headers={"X-Certq-Board": "1"})
    assert response.status_code == 307 and response.headers["location"] == "/api/models"
    assert post.status_code == 307 and post.headers["location"] == f"{BOARD_PATH}/"


async def test_certify_from_the_board_records_and_enqueues_like_the_api(api: Api, make_model: Any) -> None:
    model = await make_model(regions=["local", "eu-west-1"])
    response = await api.board.post(
        "api/certify", json={"mode": "multiple", "modelIds": [str(model.id)], "regions": ["local", "eu-west-1"]}
    )
    assert response.status_code == 201, response.text
    result = response.json()["result"]
    assert result["totalJobs"] == 2
    job = await api.store.get_job(result["jobId"])
    assert job is not None and job.total_models == 2
    assert (await api.queue.counts())["waiting"] == 2
    audit = [e for e in (await DashboardQueries(api.store.pool).list_audit()).items if e.actor == api.user]
    assert [(e.action, e.target) for e in audit] == [("certify", result["jobId"])]

    again = await api.board.post(
        "api/certify", json={"mode": "single", "modelIds": [str(model.id)], "regions": ["local"]}
    )
    assert again.status_code == 200 and again.json()["result"]["existing"] is True


async def test_certify_refusals_from_the_api_logic_reach_the_board(api: Api, make_model: Any) -> None:
    model = await make_model(regions=["local"])
    response = await api.board.post(
        "api/certify", json={"mode": "single", "modelIds": [str(model.id)], "regions": ["mars-1"]}
    )
    assert response.status_code == 422
    assert response.json()["field"] == "region"
    bad_id = await api.board.post("api/certify", json={"mode": "multiple", "modelIds": ["nope"], "regions": ["local"]})
    assert bad_id.status_code == 400 and bad_id.json()["field"] == "modelIds[0]"
    assert (await api.queue.counts())["waiting"] == 0
    audit = [e for e in (await DashboardQueries(api.store.pool).list_audit()).items if e.actor == api.user]
    assert [(e.action, e.outcome[:13]) for e in audit] == [("certify", "refused (400)"), ("certify", "refused (422)")]


async def test_empty_certify_orders_from_the_board_are_400s_naming_the_field(api: Api, make_model: Any) -> None:
    model = await make_model(regions=["local"])
    orders = [
        ({"mode": "single", "modelIds": [], "regions": ["local"]}, "modelIds"),
        ({"mode": "single", "modelIds": [str(model.id)], "regions": []}, "regions"),
        ({"mode": "multiple", "modelIds": [], "regions": ["local"]}, "modelIds"),
        ({"mode": "multiple", "modelIds": [str(model.id)], "regions": []}, "regions"),
        ({"mode": "all", "modelIds": [], "regions": []}, "regions"),
    ]
    for order, field in orders:
        response = await api.board.post("api/certify", json=order)
        assert response.status_code == 400, (order, response.text)
        assert response.headers["content-type"].startswith("application/problem+json")
        assert response.json()["field"] == field, (order, response.json())
    assert (await api.queue.counts())["waiting"] == 0


async def test_the_api_certify_logic_refuses_empty_orders_it_is_handed_directly(api: Api) -> None:
    from certq.api.board import ServicesDeps
    from certq.api.services import ApiMetrics, Services, token_set
    from certq.dashboard import CertifyOrder
    from certq.metrics import Metrics

    services = Services(
        settings=api.settings,
        tokens=token_set(api.settings),
        metrics=ApiMetrics(Metrics()),
        store=api.store,
        queue=api.queue,
    )
    run = ServicesDeps(services).certify
    assert run is not None
    for mode in ("single", "multiple", "all"):
        for model_ids, regions in (([], []), ([], ["local"]), (["00000000-0000-0000-0000-000000000001"], [])):
            status, body = await run(CertifyOrder(mode=mode, model_ids=model_ids, regions=regions))
            if mode == "all" and regions:
                continue  # every active model in "local": a real order
            assert status == 400, (mode, model_ids, regions, body)
            assert body["field"] in ("modelIds", "regions"), body
