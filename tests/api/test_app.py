"""The app around the routes: OpenAPI from the pydantic models, health and metrics, start-up refusals."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from typing import Any

import httpx
import pytest

from certq.api.app import ENDPOINTS
from tests.support.databases import empty_database


async def test_openapi_documents_every_route_with_its_models(api_server: Any) -> None:
    async with httpx.AsyncClient(base_url=api_server.url) as http:
        document = (await http.get("/openapi.json")).json()
    assert document["openapi"].startswith("3.1")
    for endpoint in ENDPOINTS:
        operation = document["paths"][endpoint.path][endpoint.method.lower()]
        if endpoint.body is not None:
            ref = operation["requestBody"]["content"]["application/json"]["schema"]["$ref"]
            assert ref.endswith(endpoint.body.__name__)
    schemas = document["components"]["schemas"]
    assert set(schemas["CertifyBody"]["properties"]) == {"modelId", "region", "priority"}
    assert schemas["CertifyBody"]["additionalProperties"] is False
    assert "certifications" in schemas["JobDetail"]["properties"]


async def test_health_ready_and_metrics_answer_on_the_api(api_server: Any) -> None:
    async with httpx.AsyncClient(base_url=api_server.url, headers=api_server.headers) as http:
        health = await http.get("/health")
        ready = await http.get("/ready")
        await http.get("/api/models")
        text = await http.get("/metrics", headers={"Accept": "text/plain"})
        seed = await http.get("/metrics", headers={"Accept": "application/json"})
    assert health.status_code == 200 and health.json()["status"] == "healthy"
    assert health.json()["api"]["queueName"] == api_server.settings.queue_name
    assert ready.status_code == 200 and ready.json()["ready"] is True
    assert 'certq_api_requests_total{method="GET",route="list_models",status="2xx"}' in text.text
    assert set(seed.json()["queue"]) == {"waiting", "active", "completed", "failed", "delayed"}


@pytest.mark.parametrize(
    ("env", "variable"),
    [
        ({"CERTQ_ENV": "production", "API_TOKENS": ""}, "API_TOKENS"),
        ({"CERTQ_ENV": "production", "API_TOKENS": "t" * 32, "BULL_BOARD_PASSWORD": "admin123"}, "BULL_BOARD_PASSWORD"),
        ({"CERTQ_ENV": "production", "API_TOKENS": "a", "BULL_BOARD_PASSWORD": "long enough pw"}, "API_TOKENS"),
        ({"API_PORT": "not-a-port"}, "API_PORT"),
    ],
)
def test_api_refuses_to_start_with_unsafe_or_invalid_configuration(env: dict[str, str], variable: str) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "certq.api"],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tempfile.gettempdir(),
    )
    assert result.returncode == 3
    assert variable in result.stderr and "Traceback" not in result.stderr


def test_api_refuses_to_start_on_an_unmigrated_database(postgres_server_url: str) -> None:
    with empty_database(postgres_server_url, "api_empty") as empty:
        result = subprocess.run(
            [sys.executable, "-m", "certq.api"],
            env={**os.environ, "DATABASE_URL": empty},
            capture_output=True,
            text=True,
            timeout=60,
            cwd=tempfile.gettempdir(),
        )
    assert result.returncode == 3
    assert "python -m certq migrate" in result.stderr and "Traceback" not in result.stderr


async def test_a_lost_database_is_a_503_not_a_500(api_server: Any) -> None:
    await api_server.services.store.close()  # PostgreSQL went away under the running API
    async with httpx.AsyncClient(base_url=api_server.url, headers=api_server.headers) as http:
        listing = await http.get("/api/models")
        ready = await http.get("/ready")
    assert listing.status_code == 503 and listing.headers["retry-after"] == "5"
    assert listing.headers["content-type"] == "application/problem+json"
    assert ready.status_code == 503


@pytest.mark.parametrize("path", ["/admin/queues", "/api/models/"])
async def test_a_redirect_names_a_path_not_the_host_header(api_server: Any, path: str) -> None:
    settings = api_server.settings
    # The board asks for its own login before it redirects; /api/* takes the bearer token.
    auth = httpx.BasicAuth(settings.board_username, settings.board_password) if path.startswith("/admin") else None
    async with httpx.AsyncClient(base_url=api_server.url, follow_redirects=False, auth=auth) as client:
        headers = (
            {"Host": "evil.test"} if auth else {"Host": "evil.test", "Authorization": f"Bearer {api_server.token}"}
        )
        response = await client.get(path, headers=headers)
    assert 300 <= response.status_code < 400
    location = response.headers["location"]
    assert location.startswith("/") and not location.startswith("//") and "evil.test" not in location
