"""Provider errors map to the contract's categories: code first, status second, message last."""

from __future__ import annotations

import httpx
import pytest

from certq.certification.classify import (
    ErrorBody,
    classify_bedrock,
    classify_openai,
    classify_transport,
    parse_retry_after,
    read_error_body,
)
from certq.certification.errors import RETRYABLE
from certq.certification.errors import ErrorCategory as C

OPENAI_TABLE = [
    # (status, body, expected, why)
    (
        401,
        b'{"error":{"message":"Incorrect API key","type":"invalid_request_error","code":"invalid_api_key"}}',
        C.AUTH_ERROR,
        "openai 401",
    ),
    (401, b'{"detail":"Invalid API key"}', C.AUTH_ERROR, "llama-cpp-python FastAPI shape"),
    (
        401,
        b'{"error":{"message":"Invalid API Key","type":"authentication_error","code":401}}',
        C.AUTH_ERROR,
        "llama-server",
    ),
    (
        403,
        b'{"error":{"message":"not supported","code":"unsupported_country_region_territory"}}',
        C.PERMISSION_DENIED,
        "openai region block",
    ),
    (403, b"Forbidden", C.PERMISSION_DENIED, "plain 403"),
    (
        404,
        b'{"error":{"message":"The model `x` does not exist","type":"invalid_request_error","code":"model_not_found"}}',
        C.MODEL_NOT_FOUND,
        "openai model_not_found code",
    ),
    (
        404,
        b'{"object":"error","message":"The model `x` does not exist.","type":"NotFoundError","code":404}',
        C.MODEL_NOT_FOUND,
        "vLLM flat body",
    ),
    (
        404,
        b'{"error":{"message":"model \\"x\\" not found, try pulling it first","type":"api_error"}}',
        C.MODEL_NOT_FOUND,
        "ollama /v1",
    ),
    (404, b'{"error":"model \'x\' not found"}', C.MODEL_NOT_FOUND, "ollama native string error"),
    (404, b'{"detail":"Not Found"}', C.CONFIG_ERROR, "wrong base path (FastAPI)"),
    (404, b"<html>404 page not found</html>", C.CONFIG_ERROR, "wrong base path (HTML)"),
    (
        429,
        b'{"error":{"message":"You exceeded your current quota","type":"insufficient_quota",'
        b'"code":"insufficient_quota"}}',
        C.QUOTA_EXCEEDED,
        "insufficient_quota is final though 429",
    ),
    (429, b'{"error":{"message":"Rate limit reached","code":"rate_limit_exceeded"}}', C.RATE_LIMITED, "rate limit"),
    (429, b'{"error":{"message":"Too many requests"}}', C.RATE_LIMITED, "bare 429"),
    (429, b'{"error":{"message":"check your plan and billing details"}}', C.QUOTA_EXCEEDED, "quota by message"),
    (402, b'{"error":{"message":"Payment required"}}', C.QUOTA_EXCEEDED, "Together 402"),
    (400, b'{"error":{"message":"too long","code":"context_length_exceeded"}}', C.INVALID_REQUEST, "context"),
    (422, b'{"detail":[{"loc":["body","temperature"],"msg":"bad"}]}', C.INVALID_REQUEST, "FastAPI 422"),
    (400, b'{"error":{"message":"The model `x` does not exist"}}', C.MODEL_NOT_FOUND, "400 naming a missing model"),
    (408, b"", C.TIMEOUT, "408"),
    (500, b'{"error":{"message":"internal"}}', C.SERVER_ERROR, "500"),
    (502, b"Bad Gateway", C.SERVER_ERROR, "502"),
    (503, b'{"error":{"message":"Service Unavailable"}}', C.MODEL_UNAVAILABLE, "503"),
    (503, b'{"error":{"message":"Loading model","code":503}}', C.MODEL_UNAVAILABLE, "llama.cpp loading"),
    (500, b'{"error":{"message":"model is loading, retry later"}}', C.MODEL_UNAVAILABLE, "5xx loading message"),
    (
        529,
        b'{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}',
        C.MODEL_UNAVAILABLE,
        "anthropic-style overloaded",
    ),
    (504, b"", C.TIMEOUT, "gateway timeout"),
]


@pytest.mark.parametrize(("status", "body", "expected", "why"), OPENAI_TABLE, ids=[row[3] for row in OPENAI_TABLE])
def test_openai_errors_map_to_categories(status: int, body: bytes, expected: C, why: str) -> None:
    assert classify_openai(status, read_error_body(body), "x") is expected


BEDROCK_TABLE = [
    ("AccessDeniedException", 403, "You don't have access to the model", C.PERMISSION_DENIED),
    ("ResourceNotFoundException", 404, "This model version has reached the end of its life.", C.MODEL_NOT_FOUND),
    ("ValidationException", 400, "The provided model identifier is invalid.", C.MODEL_NOT_FOUND),
    (
        "ValidationException",
        400,
        "Invocation of model ID x with on-demand throughput isn't supported. Retry your "
        "request with the ID or ARN of an inference profile",
        C.CONFIG_ERROR,
    ),
    ("ValidationException", 400, "1 validation error detected", C.INVALID_REQUEST),
    ("ThrottlingException", 429, "Too many tokens per day", C.RATE_LIMITED),
    ("ModelNotReadyException", 429, "Model is not ready", C.MODEL_UNAVAILABLE),
    ("ServiceUnavailableException", 503, "unavailable", C.MODEL_UNAVAILABLE),
    ("InternalServerException", 500, "internal", C.SERVER_ERROR),
    ("ModelTimeoutException", 408, "timed out", C.TIMEOUT),
    ("ModelErrorException", 424, "model error", C.SERVER_ERROR),
    ("modelStreamErrorException", None, "stream broke", C.SERVER_ERROR),
    ("throttlingException", None, "slow down", C.RATE_LIMITED),
    ("ServiceQuotaExceededException", 400, "quota", C.QUOTA_EXCEEDED),
    ("UnrecognizedClientException", 403, "The security token included in the request is invalid.", C.AUTH_ERROR),
    ("InvalidSignatureException", 403, "signature mismatch", C.AUTH_ERROR),
    ("ExpiredTokenException", 403, "expired", C.AUTH_ERROR),
    ("com.amazon.coral.service#UnrecognizedClientException", 403, "x", C.AUTH_ERROR),
    (None, 403, "The security token included in the request is invalid", C.AUTH_ERROR),
    (None, 502, "bad gateway", C.SERVER_ERROR),
]


@pytest.mark.parametrize(
    ("code", "status", "message", "expected"), BEDROCK_TABLE, ids=[f"{row[0]}-{row[1]}" for row in BEDROCK_TABLE]
)
def test_bedrock_errors_map_to_categories(code: str | None, status: int | None, message: str, expected: C) -> None:
    assert classify_bedrock(code, status, message) is expected


def test_bedrock_model_not_ready_and_throttling_share_429_but_not_a_category() -> None:
    assert classify_bedrock("ModelNotReadyException", 429, "") is not classify_bedrock("ThrottlingException", 429, "")


def test_openai_code_wins_over_status() -> None:
    # insufficient_quota arrives as 429 like a rate limit, and model_not_found can arrive with any status.
    assert classify_openai(429, ErrorBody("insufficient_quota", None, "x"), "m") is C.QUOTA_EXCEEDED
    assert classify_openai(400, ErrorBody("model_not_found", None, "x"), "m") is C.MODEL_NOT_FOUND


def test_404_naming_the_requested_model_is_model_not_found() -> None:
    assert classify_openai(404, ErrorBody(None, None, "no deployment my-model-7"), "my-model-7") is C.MODEL_NOT_FOUND


TRANSPORT_TABLE = [
    (httpx.ConnectError("[Errno 111] Connection refused"), C.CONNECTION_ERROR),
    (httpx.ConnectError("[Errno -2] Name or service not known"), C.CONFIG_ERROR),
    (httpx.ConnectError("[SSL: CERTIFICATE_VERIFY_FAILED] certificate verify failed"), C.CONFIG_ERROR),
    (httpx.ConnectTimeout("timed out"), C.TIMEOUT),
    (httpx.ReadTimeout("timed out"), C.TIMEOUT),
    (httpx.RemoteProtocolError("peer closed connection without sending complete message body"), C.CONNECTION_ERROR),
    (httpx.ReadError("reset"), C.CONNECTION_ERROR),
    (httpx.UnsupportedProtocol("ftp"), C.CONFIG_ERROR),
    (ConnectionResetError(), C.CONNECTION_ERROR),
    (TimeoutError(), C.TIMEOUT),
    (KeyError("bug"), C.INTERNAL_ERROR),
]


@pytest.mark.parametrize(
    ("exc", "expected"), TRANSPORT_TABLE, ids=[type(e).__name__ + str(i) for i, (e, _) in enumerate(TRANSPORT_TABLE)]
)
def test_transport_errors_map_to_categories(exc: BaseException, expected: C) -> None:
    assert classify_transport(exc) is expected


def test_retryable_categories_are_exactly_the_contracts() -> None:
    assert {c.value for c in RETRYABLE} == {
        "RATE_LIMITED",
        "MODEL_UNAVAILABLE",
        "TIMEOUT",
        "CONNECTION_ERROR",
        "SERVER_ERROR",
    }
    assert {c.value for c in C} - {c.value for c in RETRYABLE} == {
        "AUTH_ERROR",
        "PERMISSION_DENIED",
        "MODEL_NOT_FOUND",
        "CONFIG_ERROR",
        "INVALID_REQUEST",
        "QUOTA_EXCEEDED",
        "PROTOCOL_ERROR",
        "CONTENT_FILTERED",
        "QUALITY_BELOW_THRESHOLD",
        "MODEL_MISMATCH",
        "INTERNAL_ERROR",
    }
    assert not C.QUALITY_BELOW_THRESHOLD.infrastructure


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({"Retry-After": "2"}, 2.0),
        ({"retry-after-ms": "250", "Retry-After": "9"}, 0.25),
        ({"Retry-After": "Thu, 01 Jan 2026 00:00:10 GMT"}, 10.0),
        ({"Retry-After": "soon"}, None),
        ({}, None),
    ],
)
def test_retry_after_reads_ms_seconds_and_dates(headers: dict[str, str], expected: float | None) -> None:
    from email.utils import parsedate_to_datetime

    now = parsedate_to_datetime("Thu, 01 Jan 2026 00:00:00 GMT").timestamp()
    assert parse_retry_after(headers, now=now) == expected


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (b'{"error":{"message":"m","type":"t","code":"c"}}', ErrorBody("c", "t", "m")),
        (b'{"object":"error","message":"m","type":"NotFoundError","code":404}', ErrorBody("404", "NotFoundError", "m")),
        (b'{"detail":"Invalid API key"}', ErrorBody(None, None, "Invalid API key")),
        (b'{"error":"model not found"}', ErrorBody(None, None, "model not found")),
        (b"plain text", ErrorBody(None, None, "plain text")),
        (b"", ErrorBody(None, None, "(empty body)")),
    ],
)
def test_error_bodies_are_read_tolerantly(body: bytes, expected: ErrorBody) -> None:
    assert read_error_body(body) == expected
