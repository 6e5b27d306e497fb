"""Provider errors -> error categories: the provider's error code first, HTTP status second, message last."""

from __future__ import annotations

import email.utils
import re
import ssl
import time
from collections.abc import Mapping
from dataclasses import dataclass

import httpx
import orjson

from certq.certification.errors import ErrorCategory as C

_OPENAI_CODES: dict[str, C] = {
    "insufficient_quota": C.QUOTA_EXCEEDED,
    "billing_hard_limit_reached": C.QUOTA_EXCEEDED,
    "billing_not_active": C.QUOTA_EXCEEDED,
    "quota_exceeded": C.QUOTA_EXCEEDED,
    "invalid_api_key": C.AUTH_ERROR,
    "invalid_authentication": C.AUTH_ERROR,
    "authentication_error": C.AUTH_ERROR,
    "unauthorized": C.AUTH_ERROR,
    "permission_denied": C.PERMISSION_DENIED,
    "permission_error": C.PERMISSION_DENIED,
    "unsupported_country_region_territory": C.PERMISSION_DENIED,
    "model_not_found": C.MODEL_NOT_FOUND,
    "context_length_exceeded": C.INVALID_REQUEST,
    "exceed_context_size_error": C.INVALID_REQUEST,
    "unsupported_parameter": C.INVALID_REQUEST,
    "unsupported_value": C.INVALID_REQUEST,
    "rate_limit_exceeded": C.RATE_LIMITED,
    "rate_limit_error": C.RATE_LIMITED,
    "overloaded_error": C.MODEL_UNAVAILABLE,
    "engine_overloaded": C.MODEL_UNAVAILABLE,
    "server_overloaded": C.MODEL_UNAVAILABLE,
}

# Bedrock codes as botocore reports them; in-stream exceptions arrive lowerCamel, so keys are lower case.
_BEDROCK_CODES: dict[str, C] = {
    "accessdeniedexception": C.PERMISSION_DENIED,
    "resourcenotfoundexception": C.MODEL_NOT_FOUND,
    "validationexception": C.INVALID_REQUEST,
    "throttlingexception": C.RATE_LIMITED,
    "toomanyrequestsexception": C.RATE_LIMITED,
    "modelnotreadyexception": C.MODEL_UNAVAILABLE,
    "serviceunavailableexception": C.MODEL_UNAVAILABLE,
    "internalserverexception": C.SERVER_ERROR,
    "internalfailure": C.SERVER_ERROR,
    "modeltimeoutexception": C.TIMEOUT,
    "modelerrorexception": C.SERVER_ERROR,
    "modelstreamerrorexception": C.SERVER_ERROR,
    "servicequotaexceededexception": C.QUOTA_EXCEEDED,
    "unrecognizedclientexception": C.AUTH_ERROR,
    "invalidsignatureexception": C.AUTH_ERROR,
    "signaturedoesnotmatch": C.AUTH_ERROR,
    "expiredtokenexception": C.AUTH_ERROR,
    "expiredtoken": C.AUTH_ERROR,
    "invalidclienttokenid": C.AUTH_ERROR,
    "incompletesignature": C.AUTH_ERROR,
    "incompletesignatureexception": C.AUTH_ERROR,
    "missingauthenticationtokenexception": C.AUTH_ERROR,
    "missingauthenticationtoken": C.AUTH_ERROR,
    "nocredentialserror": C.AUTH_ERROR,
}

_MODEL_MISSING = re.compile(
    r"model.{0,80}(not found|does not exist|doesn't exist|not exist|unknown|not available|try pulling)"
    r"|(no such|unknown|invalid) model|model identifier is invalid|reached the end of its life",
    re.IGNORECASE | re.DOTALL,
)
_QUOTA = re.compile(r"insufficient.quota|exceeded your current quota|billing|payment required|credit", re.IGNORECASE)
_LOADING = re.compile(r"loading model|model is loading|overloaded|not ready|warming up", re.IGNORECASE)
_INFERENCE_PROFILE = re.compile(r"inference profile|on-demand throughput", re.IGNORECASE)
_DNS = re.compile(
    r"name or service not known|nodename nor servname|temporary failure in name resolution|getaddrinfo", re.IGNORECASE
)


@dataclass(frozen=True)
class ErrorBody:
    """What an error response said, read tolerantly from the shapes servers actually use."""

    code: str | None
    type: str | None
    message: str


def read_error_body(body: bytes) -> ErrorBody:
    """`{"error": {...}}` (OpenAI), flat `{"message", "type", "code"}` (vLLM), `{"detail"}` (FastAPI),
    `{"error": "text"}` (Ollama native), or plain text."""
    try:
        data = orjson.loads(body) if body else None
    except orjson.JSONDecodeError:
        data = None
    if not isinstance(data, dict):
        text = body.decode("utf-8", "replace").strip()
        return ErrorBody(None, None, text[:300] or "(empty body)")
    inner = data.get("error")
    if isinstance(inner, dict):
        data = inner
    elif isinstance(inner, str):
        return ErrorBody(None, None, inner)
    message = data.get("message") or data.get("detail") or data.get("Message") or ""
    if not isinstance(message, str):
        message = orjson.dumps(message).decode()
    code = data.get("code")
    kind = data.get("type") or data.get("__type")
    return ErrorBody(
        str(code) if code is not None and not isinstance(code, bool) else None,
        str(kind) if isinstance(kind, str) else None,
        message or orjson.dumps(data).decode()[:300],
    )


def classify_openai(status: int, error: ErrorBody, model_id: str) -> C:
    """Category of a non-2xx answer from an OpenAI-compatible server."""
    for word in (error.code, error.type):
        if word and word.lower() in _OPENAI_CODES:
            category = _OPENAI_CODES[word.lower()]
            # A rate_limit code on a quota message is still the final kind (some servers mix them).
            if category is C.RATE_LIMITED and _QUOTA.search(error.message):
                return C.QUOTA_EXCEEDED
            return category
    message = error.message
    model_missing = bool(_MODEL_MISSING.search(message)) or (bool(model_id) and model_id in message)
    if status == 401:
        return C.AUTH_ERROR
    if status == 402:
        return C.QUOTA_EXCEEDED
    if status == 403:
        return C.PERMISSION_DENIED
    if status == 404:
        return C.MODEL_NOT_FOUND if model_missing else C.CONFIG_ERROR
    if status == 408:
        return C.TIMEOUT
    if status == 429:
        return C.QUOTA_EXCEEDED if _QUOTA.search(message) else C.RATE_LIMITED
    if status in (503, 529):
        return C.MODEL_UNAVAILABLE
    if status == 504:
        return C.TIMEOUT
    if status >= 500:
        return C.MODEL_UNAVAILABLE if _LOADING.search(message) else C.SERVER_ERROR
    if status >= 400:
        return C.MODEL_NOT_FOUND if _MODEL_MISSING.search(message) else C.INVALID_REQUEST
    return C.PROTOCOL_ERROR


def classify_bedrock(code: str | None, status: int | None, message: str) -> C:
    """Category of a Bedrock Runtime error (HTTP response or in-stream exception)."""
    normal = (code or "").rsplit("#", 1)[-1].split(":", 1)[0].lower()
    category = _BEDROCK_CODES.get(normal)
    if category is C.INVALID_REQUEST:
        if _INFERENCE_PROFILE.search(message):
            return C.CONFIG_ERROR
        if _MODEL_MISSING.search(message):
            return C.MODEL_NOT_FOUND
    if category is not None:
        return category
    if status is not None:
        if status in (400, 403) and re.search(r"security token|signature|credential", message, re.IGNORECASE):
            return C.AUTH_ERROR
        return classify_openai(status, ErrorBody(None, None, message), "")
    return C.SERVER_ERROR


def classify_transport(exc: BaseException) -> C:
    """Category of an exception raised before or while reading a response."""
    if isinstance(exc, httpx.TimeoutException):
        return C.TIMEOUT
    if isinstance(exc, httpx.UnsupportedProtocol | httpx.InvalidURL | httpx.ProxyError):
        return C.CONFIG_ERROR
    if isinstance(exc, httpx.ConnectError):
        text = str(exc)
        cause = exc.__cause__ or exc.__context__
        if _DNS.search(text) or isinstance(cause, ssl.SSLCertVerificationError) or "CERTIFICATE_VERIFY_FAILED" in text:
            return C.CONFIG_ERROR
        return C.CONNECTION_ERROR
    if isinstance(exc, httpx.TransportError | ConnectionError | EOFError):
        return C.CONNECTION_ERROR
    if isinstance(exc, TimeoutError):
        return C.TIMEOUT
    return C.INTERNAL_ERROR


def parse_retry_after(headers: Mapping[str, str], now: float | None = None) -> float | None:
    """Seconds to wait from `retry-after-ms`, else `retry-after` (seconds or an HTTP date)."""
    lowered = {k.lower(): v for k, v in headers.items()}
    raw_ms = lowered.get("retry-after-ms")
    if raw_ms:
        try:
            return max(0.0, float(raw_ms) / 1000.0)
        except ValueError:
            pass
    raw = lowered.get("retry-after")
    if not raw:
        return None
    try:
        return max(0.0, float(raw))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(raw)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))
