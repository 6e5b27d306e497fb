"""Bearer-token authentication of /api/* (RFC 6750) and token roles; tokens compared in constant time."""

from __future__ import annotations

import enum
import hashlib
import hmac
import logging
import math
import re
from collections.abc import Mapping

from starlette.types import ASGIApp, Receive, Scope, Send

from certq.api.problems import Problem
from certq.login_throttle import LoginThrottle

log = logging.getLogger("certq.api")

FAILED_TOKENS_PER_MINUTE = 30
"""Wrong bearer tokens one client may send in 60 s before it gets 429 (tokens are long and random, so
this is about noticing and slowing a scanner, not about guessing odds)."""


class Role(enum.IntEnum):
    """What a token may do; each role includes the ones below it."""

    READ = 1
    CERTIFY = 2
    ADMIN = 3

    @property
    def label(self) -> str:
        return self.name.lower()


# Starting and cancelling certifications; every other write is admin, every read is read.
_CERTIFY_ROUTES = (
    ("POST", re.compile(r"/api/certification-queue/(certify|certify-model|certify-multiple|certify-all)")),
    ("DELETE", re.compile(r"/api/certification-queue/jobs/[^/]+")),
)


def required_role(method: str, path: str) -> Role:
    """The role a request needs: the one table of route -> role (OpenAPI documents it from here too)."""
    method = method.upper()
    if method in ("GET", "HEAD", "OPTIONS"):
        return Role.READ
    path = path.rstrip("/") or "/"
    if any(method == m and pattern.fullmatch(path) for m, pattern in _CERTIFY_ROUTES):
        return Role.CERTIFY
    return Role.ADMIN


class TokenSet:
    """The accepted tokens and their roles, kept as SHA-256 digests so every comparison has the same length."""

    def __init__(self, tokens: Mapping[str, Role]) -> None:
        self._digests = [(hashlib.sha256(t.encode()).digest(), role) for t, role in tokens.items()]

    def __bool__(self) -> bool:
        return bool(self._digests)

    def role_of(self, token: str) -> Role | None:
        """The token's role, or None if it is not one of the set."""
        candidate = hashlib.sha256(token.encode()).digest()
        found: Role | None = None
        for digest, role in self._digests:  # no early exit: the time taken does not depend on which one matched
            if hmac.compare_digest(candidate, digest):
                found = role
        return found

    def accepts(self, token: str) -> bool:
        return self.role_of(token) is not None


def token_fingerprint(token: str) -> str:
    """A short, non-reversible name of a token (scopes idempotency keys per client)."""
    return hashlib.sha256(token.encode()).hexdigest()[:16]


def bearer_token(header: str | None) -> str | None:
    if header is None:
        return None
    scheme, _, token = header.partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token or " " in token:
        return None
    return token


class BearerAuth:
    """ASGI middleware: requests under `prefix` need `Authorization: Bearer <token>`."""

    def __init__(
        self, app: ASGIApp, tokens: TokenSet, prefix: str = "/api", throttle: LoginThrottle | None = None
    ) -> None:
        self.app = app
        self.tokens = tokens
        self.prefix = prefix
        self.throttle = throttle or LoginThrottle(FAILED_TOKENS_PER_MINUTE, 60.0)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not _under(scope["path"], self.prefix):
            await self.app(scope, receive, send)
            return
        header = None
        for name, value in scope["headers"]:
            if name == b"authorization":
                header = value.decode("latin-1")
                break
        client = scope["client"][0] if scope.get("client") else "unknown"
        wait_s = self.throttle.retry_after(client)
        if wait_s > 0:
            await Problem(
                429,
                "too many wrong bearer tokens from this address; try again later",
                field="Authorization",
                kind="too-many-failed-logins",
                headers={"Retry-After": str(math.ceil(wait_s))},
            ).response(scope["path"])(scope, receive, send)
            return
        token = bearer_token(header)
        role = None if token is None else self.tokens.role_of(token)
        needed = required_role(scope["method"], scope["path"])
        if token is None:
            problem = Problem(
                401,
                "send Authorization: Bearer <token>",
                field="Authorization",
                kind="unauthorized",
                headers={"WWW-Authenticate": 'Bearer realm="certq"'},
            )
        elif role is None:
            count = self.throttle.failed(client)
            log.warning(
                "wrong bearer token",
                extra={"client": client, "failures_in_window": count, "path": scope["path"], "method": scope["method"]},
            )
            problem = Problem(
                401,
                "the bearer token is not valid",
                field="Authorization",
                kind="unauthorized",
                headers={"WWW-Authenticate": 'Bearer realm="certq", error="invalid_token"'},
            )
        elif role < needed:
            problem = Problem(
                403,
                f"{scope['method']} {scope['path']} needs a token with role {needed.label}; "
                f"this token's role is {role.label}",
                field="Authorization",
                kind="forbidden",
                headers={"WWW-Authenticate": 'Bearer realm="certq", error="insufficient_scope"'},
            )
        else:
            state = scope.setdefault("state", {})
            state["token_id"] = token_fingerprint(token)
            state["token_role"] = role.label
            await self.app(scope, receive, send)
            return
        await problem.response(scope["path"])(scope, receive, send)


def _under(path: str, prefix: str) -> bool:
    return path == prefix or path.startswith(prefix + "/")
