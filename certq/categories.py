"""The contract's error categories (`errorCategory`): one vocabulary for the engine, the store and the schema.

A leaf module: the certification engine names them, the store checks what it is given against them, and
schema.sql's CHECK constraint lists the same words (tests/test_categories.py keeps the three in step).
"""

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
