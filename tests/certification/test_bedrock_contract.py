"""The Bedrock adapter against a loopback Converse/ConverseStream stand-in that checks SigV4 signatures."""

from __future__ import annotations

import orjson
import pytest

from certq.certification import ModelEndpoint, RunConfig, run_certification
from tests.certification.conftest import SleepLog
from tests.certification.stubs import ACCESS_KEY, SECRET_KEY, BedrockHandler, serve

pytestmark = pytest.mark.usefixtures("aws_env")


def endpoint(root: str, model: str = "ok", region: str = "us-east-1") -> ModelEndpoint:
    return ModelEndpoint(provider="bedrock", api_model_id=model, region=region, base_url=root)


async def test_converse_and_converse_stream_certify_with_valid_sigv4(fast_config: RunConfig) -> None:
    with serve(BedrockHandler) as (root, stub):
        verdict = await run_certification(endpoint(root, "ok:0"), config=fast_config)
    body = verdict.to_json()
    assert body["status"] == "CERTIFIED", body
    assert all(p["passed"] for p in body["testResults"]), body["testResults"]
    paths = {r.path for r in stub.requests}
    assert paths == {"/model/ok%3A0/converse", "/model/ok%3A0/converse-stream"}
    assert all(
        r.headers["Authorization"].startswith(f"AWS4-HMAC-SHA256 Credential={ACCESS_KEY}/") for r in stub.requests
    )
    metrics = body["metrics"]
    assert metrics["httpStatusCounts"] == {"200": 22, "400": 1}  # 19 + the 3 of token accounting
    assert metrics["serverLatencyMs"]["n"] > 0 and metrics["stream"]["usageInStream"] == 2
    assert metrics["ttftMs"]["n"] == 2
    text = orjson.dumps(body).decode()
    assert SECRET_KEY not in text


RETRIED = 1 + RunConfig().max_retries  # the first try and every in-run retry
MATRIX = {
    "throttle": ("RATE_LIMITED", True, RETRIED),
    "notready": ("MODEL_UNAVAILABLE", True, RETRIED),
    "unavailable": ("MODEL_UNAVAILABLE", True, RETRIED),
    "internal": ("SERVER_ERROR", True, RETRIED),
    "modelerror": ("SERVER_ERROR", True, RETRIED),
    "timeout": ("TIMEOUT", True, RETRIED),
    "hang": ("TIMEOUT", True, RETRIED),
    "denied": ("PERMISSION_DENIED", False, 1),
    "notfound": ("MODEL_NOT_FOUND", False, 1),
    "validation": ("MODEL_NOT_FOUND", False, 1),
    "badparam": ("INVALID_REQUEST", False, 1),
    "quota": ("QUOTA_EXCEEDED", False, 1),
    "unrecognized": ("AUTH_ERROR", False, 1),
}


@pytest.mark.parametrize("mode", sorted(MATRIX))
async def test_bedrock_errors_end_the_run_with_their_category(mode: str, sleeps: SleepLog) -> None:
    category, retryable, requests = MATRIX[mode]
    config = RunConfig(read_timeout_s=0.3, stream_idle_timeout_s=0.3, request_deadline_s=2.0, sleep=sleeps)
    with serve(BedrockHandler) as (root, stub):
        verdict = await run_certification(endpoint(root, mode), config=config)
    assert (verdict.error_category, verdict.retryable) == (category, retryable), verdict.error_message
    assert len(stub.requests) == requests and verdict.metrics["retries"] == requests - 1
    assert verdict.test_results[0]["outcome"] == "error"


@pytest.mark.parametrize(
    ("mode", "category"),
    [("stream-error", "SERVER_ERROR"), ("stream-throttle", "RATE_LIMITED"), ("corrupt", "PROTOCOL_ERROR")],
)
async def test_in_stream_exceptions_are_classified_by_their_code(
    mode: str, category: str, fast_config: RunConfig
) -> None:
    with serve(BedrockHandler) as (root, _):
        verdict = await run_certification(endpoint(root, mode), config=fast_config)
    results = {p["name"]: p for p in verdict.test_results}
    assert verdict.error_category == category, verdict.error_message
    assert results["connectivity"]["passed"] and results["streaming"]["outcome"] == "error"


async def test_a_model_that_needs_an_inference_profile_is_retried_with_the_regions_prefix(
    fast_config: RunConfig,
) -> None:
    with serve(BedrockHandler) as (root, stub):
        verdict = await run_certification(endpoint(root, "profile", region="eu-west-1"), config=fast_config)
    assert verdict.status == "CERTIFIED", verdict.error_message
    assert verdict.metrics["modelIdUsed"] == "eu.profile"
    assert stub.requests[0].path == "/model/profile/converse"
    assert {r.path.split("/")[2] for r in stub.requests[1:]} == {"eu.profile"}


async def test_a_profile_error_without_a_profile_region_is_a_config_error(fast_config: RunConfig) -> None:
    with serve(BedrockHandler) as (root, _):
        verdict = await run_certification(endpoint(root, "profile", region="sa-east-1"), config=fast_config)
    assert verdict.error_category == "CONFIG_ERROR" and not verdict.retryable


async def test_a_wrong_secret_is_an_auth_error(monkeypatch: pytest.MonkeyPatch, fast_config: RunConfig) -> None:
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "not-the-secret")
    with serve(BedrockHandler) as (root, _):
        verdict = await run_certification(endpoint(root), config=fast_config)
    assert verdict.error_category == "AUTH_ERROR"
    assert "not-the-secret" not in orjson.dumps(verdict.to_json()).decode()


async def test_missing_credentials_are_an_auth_error_without_a_request(
    monkeypatch: pytest.MonkeyPatch, fast_config: RunConfig
) -> None:
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    with serve(BedrockHandler) as (root, stub):
        verdict = await run_certification(endpoint(root), config=fast_config)
    assert verdict.error_category == "AUTH_ERROR" and stub.requests == []


async def test_a_bedrock_api_key_is_sent_as_a_bearer_token(fast_config: RunConfig) -> None:
    with serve(BedrockHandler) as (root, stub):
        verdict = await run_certification(
            ModelEndpoint("bedrock", "ok", "us-east-1", root, api_key="bedrock-api-key-123456"), config=fast_config
        )
    assert stub.requests[0].headers["Authorization"] == "Bearer bedrock-api-key-123456"
    assert verdict.error_category == "AUTH_ERROR"  # the stand-in only accepts SigV4
    assert "bedrock-api-key-123456" not in orjson.dumps(verdict.to_json()).decode()


async def test_a_region_that_is_not_an_aws_region_is_a_config_error(fast_config: RunConfig) -> None:
    verdict = await run_certification(ModelEndpoint("bedrock", "ok", "local"), config=fast_config)
    assert verdict.error_category == "CONFIG_ERROR"


def test_the_stand_in_speaks_the_protocol_botocores_own_client_expects() -> None:
    """The real botocore client (its serializer, signer, parsers and retries off) against the stand-in."""
    import botocore.session
    from botocore.config import Config
    from botocore.exceptions import ClientError, EventStreamError

    session = botocore.session.get_session()
    with serve(BedrockHandler) as (root, stub):
        client = session.create_client(
            "bedrock-runtime",
            region_name="us-east-1",
            endpoint_url=root,
            aws_access_key_id=ACCESS_KEY,
            aws_secret_access_key=SECRET_KEY,
            config=Config(retries={"mode": "standard", "total_max_attempts": 1}),
        )
        messages = [{"role": "user", "content": [{"text": "Reply with exactly the word: pong"}]}]
        answer = client.converse(modelId="ok:0", messages=messages)
        assert answer["output"]["message"]["content"][0]["text"] == "pong"
        assert answer["stopReason"] == "end_turn" and answer["usage"]["totalTokens"] == 6 + 3 + 1
        events = list(client.converse_stream(modelId="ok:0", messages=messages)["stream"])
        assert [next(iter(e)) for e in events] == [
            "messageStart",
            "contentBlockDelta",
            "contentBlockStop",
            "messageStop",
            "metadata",
        ]
        with pytest.raises(ClientError) as error:
            client.converse(modelId="notready", messages=messages)
        assert error.value.response["Error"]["Code"] == "ModelNotReadyException"
        with pytest.raises(EventStreamError) as stream_error:
            list(client.converse_stream(modelId="stream-error", messages=messages)["stream"])
        assert stream_error.value.response["Error"]["Code"] == "modelStreamErrorException"
        client.close()
    assert len(stub.requests) == 4  # signatures verified by the stand-in; no SDK retries
