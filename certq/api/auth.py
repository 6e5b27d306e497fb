"""Bearer-token authentication of /api/* (RFC 6750), tokens compared in constant time."""

from __future__ import annotations

import hashlib
import hmac

from starlette.types import ASGIApp, Receive, Scope, Send

from certq.api.problems import Problem


class TokenSet:
    """The accepted tokens, kept as SHA-256 digests so every comparison has the same length."""

    def __init__(self, tokens: list[str]) -> None:
        self._digests = [hashlib.sha256(t.encode()).digest() for t in tokens]

    def __bool__(self) -> bool:
        return bool(self._digests)

    def accepts(self, token: str) -> bool:
        candidate = hashlib.sha256(token.encode()).digest()
        matched = False
        for digest in self._digests:  # no early exit: the time taken does not depend on which one matched
            matched |= hmac.compare_digest(candidate, digest)
        return matched


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

    def __init__(self, app: ASGIApp, tokens: TokenSet, prefix: str = "/api") -> None:
        self.app = app
        self.tokens = tokens
        self.prefix = prefix

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not _under(scope["path"], self.prefix):
            await self.app(scope, receive, send)
            return
        header = None
        for name, value in scope["headers"]:
            if name == b"authorization":
                header = value.decode("latin-1")
                break
        token = bearer_token(header)
        if token is None:
            problem = Problem(401, "send Authorization: Bearer <token>", field="Authorization", kind="unauthorized",
                              headers={"WWW-Authenticate": 'Bearer realm="certq"'})
        elif not self.tokens.accepts(token):
            problem = Problem(401, "the bearer token is not valid", field="Authorization", kind="unauthorized",
                              headers={"WWW-Authenticate": 'Bearer realm="certq", error="invalid_token"'})
        else:
            scope.setdefault("state", {})["token_id"] = token_fingerprint(token)
            await self.app(scope, receive, send)
            return
        await problem.response(scope["path"])(scope, receive, send)


def _under(path: str, prefix: str) -> bool:
    return path == prefix or path.startswith(prefix + "/")
