"""Certifies one model deployment: provider adapters, the probe battery, scoring and error categories."""

from __future__ import annotations

from certq.certification.chat import ModelEndpoint
from certq.certification.config import RunConfig
from certq.certification.errors import RETRYABLE, CertificationError, ErrorCategory, ProviderError
from certq.certification.limits import ResponseLimits
from certq.certification.runner import ProgressCallback, run_certification
from certq.certification.verdict import Verdict

__all__ = [
    "RETRYABLE",
    "CertificationError",
    "ErrorCategory",
    "ModelEndpoint",
    "ProgressCallback",
    "ProviderError",
    "ResponseLimits",
    "RunConfig",
    "Verdict",
    "run_certification",
]
