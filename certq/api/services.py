"""What the API's routes use: settings, store, queue, Redis and metrics, connected in the app's lifespan."""

from __future__ import annotations

import logging
import os
import secrets
import stat
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
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
        self.requests = Counter(
            "certq_api_requests",
            "HTTP requests answered, by route and status class.",
            ["method", "route", "status"],
            registry=r,
        )
        self.latency = Histogram(
            "certq_api_request_duration_seconds",
            "Time to answer an HTTP request, by route.",
            ["method", "route"],
            registry=r,
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
        )
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
    """The configured tokens and their roles; in development without any, a random admin one is made up and
    written to a file only this user can read (its path is logged, never the token)."""
    tokens = {secret: Role[role.upper()] for secret, role in settings.token_roles}
    if not tokens:
        generated = secrets.token_urlsafe(24)
        try:
            path = write_development_token(generated, settings.api_port)
            log.warning(
                "API_TOKENS is empty: /api/* accepts only a development (admin) token, written to %s "
                "(readable by this user only)",
                path,
            )
        except OSError as exc:
            log.warning(
                "API_TOKENS is empty and the development token could not be written (%s): set API_TOKENS to use /api/*",
                exc,
            )
        tokens = {generated: Role.ADMIN}
    return TokenSet(tokens)


def development_token_dir() -> Path:
    runtime = os.environ.get("XDG_RUNTIME_DIR")
    return Path(runtime) / "certq" if runtime else Path(tempfile.gettempdir()) / f"certq-{os.getuid()}"


def write_development_token(token: str, port: int) -> Path:
    """`<dir>/api-<port>.token`, mode 0600 in a 0700 directory of ours (refused if someone else made it)."""
    folder = development_token_dir()
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    info = os.lstat(folder)
    if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.getuid() or info.st_mode & 0o077:
        raise OSError(f"{folder} is not a private directory of this user")
    path = folder / f"api-{port}.token"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
    with os.fdopen(fd, "w") as handle:
        os.fchmod(handle.fileno(), 0o600)
        handle.write(token + "\n")
    return path
