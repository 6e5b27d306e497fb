"""Workers connect only to addresses the egress policy allows, checked on the address they dial."""

from __future__ import annotations

import asyncio
import socket
from typing import Any

import pytest

from certq.certification import ErrorCategory, ModelEndpoint, RunConfig, run_certification
from certq.egress import parse_egress
from tests.certification.stubs import OpenAIHandler, serve

pytestmark = pytest.mark.timeout(60)


def _config(fast_config: RunConfig, allow: str) -> RunConfig:
    return RunConfig(**{**fast_config.__dict__, "egress": parse_egress(allow, production=True)})


def _endpoint(root: str) -> ModelEndpoint:
    return ModelEndpoint(
        provider="openai",
        api_model_id="gpt-x",
        region="local",
        base_url=root + "/v1",
        api_key="sk-test-never-sent-0123456789",
    )


async def test_a_loopback_endpoint_gets_no_request_when_the_policy_refuses_it(fast_config: RunConfig) -> None:
    with serve(OpenAIHandler, host="127.0.0.2") as (root, stub):
        verdict = (await run_certification(_endpoint(root), config=_config(fast_config, "public"))).to_json()
    assert verdict["errorCategory"] == ErrorCategory.CONFIG_ERROR, verdict
    assert "egress refused" in verdict["errorMessage"] and "127.0.0.2" in verdict["errorMessage"]
    assert stub.requests == []


@pytest.fixture
async def rebinding_name(monkeypatch: pytest.MonkeyPatch) -> str:
    """`rebind.test` resolves to 127.0.0.2 through the running loop's resolver, as a hostile DNS would answer."""
    name = "rebind.test"
    loop = asyncio.get_running_loop()
    original = loop.getaddrinfo

    async def getaddrinfo(host: Any, port: Any, **kwargs: Any) -> Any:
        if host == name:
            return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("127.0.0.2", port))]
        return await original(host, port, **kwargs)

    monkeypatch.setattr(loop, "getaddrinfo", getaddrinfo)
    return name


async def test_a_public_looking_name_that_resolves_to_loopback_is_refused(
    fast_config: RunConfig, rebinding_name: str
) -> None:
    with serve(OpenAIHandler, host="127.0.0.2") as (root, stub):
        port = root.rsplit(":", 1)[1]
        endpoint = _endpoint(f"http://{rebinding_name}:{port}")
        verdict = (await run_certification(endpoint, config=_config(fast_config, "public"))).to_json()
    assert verdict["errorCategory"] == ErrorCategory.CONFIG_ERROR, verdict
    assert f"{rebinding_name} (127.0.0.2) is a loopback address" in verdict["errorMessage"]
    assert stub.requests == []


async def test_an_allowed_address_is_dialled_as_checked_with_the_name_kept_in_host(
    fast_config: RunConfig, rebinding_name: str
) -> None:
    with serve(OpenAIHandler, host="127.0.0.2") as (root, stub):
        port = root.rsplit(":", 1)[1]
        endpoint = _endpoint(f"http://{rebinding_name}:{port}")
        config = _config(fast_config, "public,127.0.0.2/32")
        verdict = (await run_certification(endpoint, config=config)).to_json()
    assert verdict["status"] == "CERTIFIED", verdict
    assert stub.requests and all(r.headers["Host"] == f"{rebinding_name}:{port}" for r in stub.requests)
