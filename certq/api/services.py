"""What the API's routes use: settings, store, queue, Redis and metrics, connected in the app's lifespan."""

from __future__ import annotations

import logging
import secrets
from dataclasses import dataclass, field
from typing import Any

from prometheus_client import Counter, Histogram

from certq.api.auth import Role, TokenSet
from certq.metrics import Metrics
from certq.settings import Settings
from certq.store import Store

log = logging.getLogger("certq.api")


class ApiMetrics:
    """The API's own series, on the shared registry of `certq.metrics.Metrics`."""

    def __init__(self, metrics: Metrics) -> None:
        r = metrics.registry
        self.base = metrics
        self.requests = Counter("certq_api_requests", "HTTP requests answered, by route and status class.",
                                ["method", "route", "status"], registry=r)
        self.latency = Histogram("certq_api_request_duration_seconds", "Time to answer an HTTP request, by route.",
                                 ["method", "route"], registry=r,
                                 buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5))
        self.enqueued = Counter("certq_api_certifications_enqueued", "Certifications handed to the queue.", registry=r)
        self.enqueue_failures = Counter(
            "certq_api_enqueue_failures",
            "Certifications committed but not enqueued (Redis error); the reconciler enqueues them later.",
            registry=r,
        )


@dataclass
class Services:
    """Filled in by the lifespan; `owned` lists what the app opened and must close."""

    settings: Settings
    tokens: TokenSet
    metrics: ApiMetrics
    store: Store | None = None
    queue: Any = None
    redis: Any = None
    owned: list[str] = field(default_factory=list)

    def need_store(self) -> Store:
        assert self.store is not None, "the app's lifespan has not run"
        return self.store


def token_set(settings: Settings) -> TokenSet:
    """The configured tokens and their roles; in development without any, a random admin one is made up and logged."""
    tokens = {secret: Role[role.upper()] for secret, role in settings.token_roles}
    if not tokens:
        generated = secrets.token_urlsafe(24)
        log.warning("API_TOKENS is empty: /api/* accepts only this development (admin) token: %s", generated)
        tokens = {generated: Role.ADMIN}
    return TokenSet(tokens)
