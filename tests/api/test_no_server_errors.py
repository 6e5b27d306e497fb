"""Property: whatever a client sends, `python -m certq.api` answers below 500 and logs no traceback."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from certq.embedded import free_port

BASE = "/api/certification-queue"
FIELDS = [
    "name",
    "provider",
    "apiModelId",
    "baseUrl",
    "apiKeyEnv",
    "regions",
    "isActive",
    "modelId",
    "modelIds",
    "region",
    "priority",
    "extra",
]
QUERY = ["page", "limit", "status", "type", "modelId", "region", "active"]

WORDS = ["openai", "bedrock", "local", "us-east-1", "high", "QUEUED", "http://h:1/v1", "nul\x00"]
json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=30)
    | st.uuids().map(str)
    | st.sampled_from(WORDS),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.sampled_from(FIELDS), inner, max_size=4),
    max_leaves=12,
)
bodies = st.one_of(
    st.dictionaries(st.sampled_from(FIELDS), json_values, max_size=6).map(lambda d: ("json", d)),
    json_values.map(lambda v: ("json", v)),
    st.binary(max_size=200).map(lambda b: ("raw", b)),
)
segment = st.one_of(st.uuids().map(str), st.text(min_size=1, max_size=40).map(lambda t: quote(t, safe="")))
paths = st.one_of(
    st.sampled_from(
        [
            "/api/models",
            f"{BASE}/certify-model",
            f"{BASE}/certify",
            f"{BASE}/certify-multiple",
            f"{BASE}/certify-all",
            f"{BASE}/history",
            f"{BASE}/certifications",
            f"{BASE}/stats",
            f"{BASE}/regions",
            "/health",
            "/ready",
            "/metrics",
            "/openapi.json",
            "/api",
        ]
    ),
    segment.map(lambda s: f"/api/models/{s}"),
    segment.map(lambda s: f"{BASE}/jobs/{s}"),
    segment.map(lambda s: f"/api/{s}"),
)
queries = st.dictionaries(
    st.sampled_from(QUERY), st.text(max_size=20) | st.integers().map(str) | st.sampled_from(WORDS), max_size=3
)
headers = st.fixed_dictionaries(
    {},
    optional={
        "Idempotency-Key": st.text(alphabet=st.characters(min_codepoint=32, max_codepoint=126), max_size=300).map(
            lambda s: s.strip() or "k"
        ),
        "Content-Type": st.sampled_from(["application/json", "text/plain", "application/problem+json", "x/y; a=b"]),
        "Accept": st.sampled_from(["application/json", "text/plain", "*/*"]),
    },
)


@pytest.fixture(scope="module")
def api_process(database_url: str, redis_url: str) -> Iterator[dict[str, Any]]:
    """`python -m certq.api` in its own process, on a migrated database and a private queue prefix."""
    token = uuid.uuid4().hex
    prefix = f"{{t{uuid.uuid4().hex[:12]}}}"
    port = free_port()
    subprocess.run(
        [sys.executable, "-m", "certq", "migrate", "--database-url", database_url],
        check=True,
        capture_output=True,
        timeout=60,
    )
    env = {
        **os.environ,
        "DATABASE_URL": database_url,
        "REDIS_URL": redis_url,
        "BULL_QUEUE_PREFIX": prefix,
        "API_TOKENS": token,
        "API_PORT": str(port),
        "API_HOST": "127.0.0.1",
        "LOG_FORMAT": "text",
    }
    with tempfile.TemporaryFile("w+") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "certq.api"], env=env, stdout=log, stderr=log, cwd=tempfile.gettempdir()
        )
        url = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + 30
            while True:
                try:
                    if httpx.get(f"{url}/live", timeout=1).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                assert process.poll() is None and time.monotonic() < deadline, "the API did not start"
                time.sleep(0.05)
            yield {"url": url, "token": token, "log": log}
        finally:
            process.terminate()
            process.wait(timeout=20)
            import redis

            client = redis.Redis.from_url(redis_url)
            keys = list(client.scan_iter(match=f"{prefix}*"))
            if keys:
                client.unlink(*keys)
            client.close()


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_no_request_gets_a_server_error(api_process: dict[str, Any]) -> None:
    auth = {"Authorization": f"Bearer {api_process['token']}"}
    with httpx.Client(base_url=api_process["url"], timeout=10) as http:

        @settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck))
        @given(
            method=st.sampled_from(["GET", "POST", "PATCH", "DELETE", "PUT"]),
            path=paths,
            query=queries,
            body=bodies,
            extra=headers,
            authorized=st.booleans(),
        )
        def check(
            method: str,
            path: str,
            query: dict[str, str],
            body: tuple[str, Any],
            extra: dict[str, str],
            authorized: bool,
        ) -> None:
            kind, value = body
            request_headers = {**extra, **(auth if authorized else {})}
            kwargs: dict[str, Any] = {"params": query, "headers": request_headers}
            if method in ("POST", "PATCH", "PUT"):
                kwargs["json" if kind == "json" else "content"] = value
            response = http.request(method, path, **kwargs)
            assert response.status_code < 500, (method, path, query, body, response.text)
            if response.status_code >= 400:
                assert response.headers["content-type"] == "application/problem+json", response.text

        check()
    log = api_process["log"]
    log.seek(0)
    assert "Traceback" not in log.read()
