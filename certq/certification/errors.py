"""Error categories of a certification run and the exception that carries one."""

from __future__ import annotations

import enum


class ErrorCategory(enum.StrEnum):
    """The contract's `errorCategory` words; the value is what goes into verdicts."""

    AUTH_ERROR = "AUTH_ERROR"
    PERMISSION_DENIED = "PERMISSION_DENIED"
    MODEL_NOT_FOUND = "MODEL_NOT_FOUND"
    CONFIG_ERROR = "CONFIG_ERROR"
    INVALID_REQUEST = "INVALID_REQUEST"
    QUOTA_EXCEEDED = "QUOTA_EXCEEDED"
    PROTOCOL_ERROR = "PROTOCOL_ERROR"
    CONTENT_FILTERED = "CONTENT_FILTERED"
    QUALITY_BELOW_THRESHOLD = "QUALITY_BELOW_THRESHOLD"
    MODEL_MISMATCH = "MODEL_MISMATCH"
    INTERNAL_ERROR = "INTERNAL_ERROR"
    RATE_LIMITED = "RATE_LIMITED"
    MODEL_UNAVAILABLE = "MODEL_UNAVAILABLE"
    TIMEOUT = "TIMEOUT"
    CONNECTION_ERROR = "CONNECTION_ERROR"
    SERVER_ERROR = "SERVER_ERROR"

    @property
    def retryable(self) -> bool:
        return self in RETRYABLE

    @property
    def infrastructure(self) -> bool:
        """True for errors of the run machinery or the deployment, as opposed to a verdict on answers."""
        return self not in (ErrorCategory.QUALITY_BELOW_THRESHOLD, ErrorCategory.MODEL_MISMATCH)


RETRYABLE: frozenset[ErrorCategory] = frozenset(
    {
        ErrorCategory.RATE_LIMITED,
        ErrorCategory.MODEL_UNAVAILABLE,
        ErrorCategory.TIMEOUT,
        ErrorCategory.CONNECTION_ERROR,
        ErrorCategory.SERVER_ERROR,
    }
)


class CertificationError(Exception):
    """Root of the certification layer's exceptions."""


class ProviderError(CertificationError):
    """A provider call failed; `category` says what kind of failure it was and whether it may pass later.

    `message` is already redacted of secrets by whoever raises it; `status` is the HTTP status (None for
    transport errors), `code` the provider's own error code, `retry_after_s` the server's hint.
    """

    def __init__(
        self,
        category: ErrorCategory,
        message: str,
        *,
        status: int | None = None,
        code: str | None = None,
        retry_after_s: float | None = None,
    ) -> None:
        super().__init__(message)
        self.category = category
        self.message = message
        self.status = status
        self.code = code
        self.retry_after_s = retry_after_s

    @property
    def retryable(self) -> bool:
        return self.category.retryable

    def __repr__(self) -> str:
        return f"ProviderError({self.category.value}, status={self.status}, code={self.code!r}, {self.message!r})"
