"""certify_order: the routes' certify logic for other front ends, refusals returned as problem bodies."""

from __future__ import annotations

from typing import Any

from certq.api.certify import certify_order
from tests.api.conftest import CreateModel


async def test_orders_answer_like_the_routes(api_server: Any, create_model: CreateModel) -> None:
    services = api_server.services
    model = await create_model(regions=["a", "b"])
    status, body = await certify_order(services, "single", [model["id"]], ["a"])
    assert status == 201 and body["status"] == "QUEUED"
    status, body = await certify_order(services, "single", [model["id"]], ["a"])
    assert status == 200 and body["existing"] is True
    status, body = await certify_order(services, "multiple", [model["id"]], ["a", "b"], "high")
    assert status == 201 and body["totalJobs"] == 1 and len(body["skipped"]) == 1


async def test_bad_orders_come_back_as_problems(api_server: Any) -> None:
    services = api_server.services
    assert (await certify_order(services, "single", [], []))[0] == 400
    status, body = await certify_order(services, "multiple", ["not-a-uuid"], ["a"])
    assert status == 400 and body["field"] == "modelIds[0]"
    status, body = await certify_order(services, "all", [], [])
    assert status == 400 and body["field"] == "regions"
    assert (await certify_order(services, "sometimes", [], ["a"]))[1]["field"] == "mode"
