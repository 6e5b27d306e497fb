"""The exceptions of a certification run; the error categories they carry live in certq.categories."""

from __future__ import annotations

from certq.categories import RETRYABLE, ErrorCategory

__all__ = ["RETRYABLE", "CertificationError", "ErrorCategory", "ProviderError"]


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
