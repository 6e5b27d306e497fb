"""The dashboard's gate: HTTP basic auth (constant-time), cross-site request refusal, security headers."""

from __future__ import annotations

import base64
import binascii
import hmac
import logging
import math
from collections.abc import Awaitable, Callable

from starlette.datastructures import Headers
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from certq.login_throttle import LoginThrottle
from certq.problems import Problem

log = logging.getLogger("certq.dashboard.guard")

CSRF_HEADER = "x-certq-board"
"""Every state-changing request must carry this header: a cross-site form cannot set it, and a cross-site
fetch that sets it needs a CORS preflight the dashboard never grants."""

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
REALM = 'Basic realm="certq dashboard", charset="UTF-8"'
SECURITY_HEADERS = [
    (
        b"content-security-policy",
        b"default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; connect-src 'self'; "
        b"frame-ancestors 'none'; base-uri 'self'; form-action 'self'",
    ),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"same-origin"),
    (b"x-frame-options", b"DENY"),
]


def check_credentials(header: str | None, username: str, password: str) -> str | None:
    """The user name when `header` is `Basic <base64 user:pass>` with the right pair, else None.

    Both parts are always compared, in constant time, so timing says nothing about which one was wrong.
    """
    if not header or not header[:6].lower() == "basic ":
        return None
    try:
        decoded = base64.b64decode(header[6:].strip(), validate=True).decode("utf-8")
    except (binascii.Error, ValueError):  # ValueError: characters outside ASCII (UnicodeDecodeError is one too)
        return None
    given_user, sep, given_password = decoded.partition(":")
    user_ok = hmac.compare_digest(given_user.encode(), username.encode())
    password_ok = hmac.compare_digest(given_password.encode(), password.encode())
    return given_user if sep and user_ok and password_ok else None


def claimed_user(header: str | None) -> str | None:
    """The user name a Basic header claims (never its password), for the audit of a failed login."""
    if not header or not header[:6].lower() == "basic ":
        return None
    try:
        decoded = base64.b64decode(header[6:].strip(), validate=True).decode("utf-8")
    except (binascii.Error, ValueError):
        return None
    user, _, _ = decoded.partition(":")
    return user[:100]


FailedLogin = Callable[[str, str | None, str, int], Awaitable[None]]
"""(client address, claimed user, path, failures in the window) -> None; recorded, never raises."""


def cross_site_reason(method: str, headers: Headers, scheme: str) -> str | None:
    """Why a state-changing request looks cross-site (None when it is acceptable)."""
    if method in SAFE_METHODS:
        return None
    if headers.get(CSRF_HEADER) != "1":
        return f"state-changing requests need the {CSRF_HEADER} header"
    fetch_site = headers.get("sec-fetch-site")
    if fetch_site is not None and fetch_site not in ("same-origin", "none"):
        return f"cross-site request refused (Sec-Fetch-Site: {fetch_site})"
    origin = headers.get("origin")
    host = headers.get("host")
    if origin is not None and origin != "null" and host is not None:
        if origin.rstrip("/") not in (f"{scheme}://{host}", f"http://{host}", f"https://{host}"):
            return f"cross-origin request refused (Origin: {origin})"
    elif origin == "null":
        return "cross-origin request refused (Origin: null)"
    return None


class BoardGuard:
    """ASGI middleware in front of the whole dashboard (pages, static files and JSON alike)."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        username: str,
        password: str,
        throttle: LoginThrottle | None = None,
        read_only: bool = False,
        on_failed_login: FailedLogin | None = None,
    ) -> None:
        self.app = app
        self.on_failed_login = on_failed_login
        self.username = username
        self.password = password
        self.throttle = throttle or LoginThrottle()
        self.read_only = read_only

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        client = scope["client"][0] if scope.get("client") else "unknown"
        wait_s = self.throttle.retry_after(client)
        if wait_s > 0:
            await Problem(
                429,
                "too many failed logins from this address; try again later",
                headers={"Retry-After": str(math.ceil(wait_s))},
            ).answer(scope, receive, send)
            return
        header = headers.get("authorization")
        user = check_credentials(header, self.username, self.password)
        if user is None:
            if header is not None:  # a browser's first request carries none: not a failed login
                count = self.throttle.failed(client)
                log.warning(
                    "dashboard login failed",
                    extra={"client": client, "failures_in_window": count, "path": scope.get("path")},
                )
                if self.on_failed_login is not None:
                    await self.on_failed_login(client, claimed_user(header), str(scope.get("path")), count)
            await Problem(
                401, "the dashboard needs its user name and password", headers={"WWW-Authenticate": REALM}
            ).answer(scope, receive, send)
            return
        reason = cross_site_reason(scope["method"], headers, scope.get("scheme", "http"))
        if reason is not None:
            await Problem(403, reason).answer(scope, receive, send)
            return
        if self.read_only and scope["method"] not in ("GET", "HEAD", "OPTIONS"):
            await Problem(403, "this dashboard is read-only (BULL_BOARD_READ_ONLY): it may look, not act").answer(
                scope, receive, send
            )
            return
        state = scope.setdefault("state", {})
        state["board_user"] = user
        state["board_read_only"] = self.read_only

        started = False

        async def send_with_headers(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                message["headers"] = [*message.get("headers", []), *SECURITY_HEADERS]
            await send(message)

        try:
            await self.app(scope, receive, send_with_headers)
        except Exception:
            # Starlette re-raises after its 500 handler answered (and logged); passed on, the server
            # would log it again and drop the keep-alive connection the answer went out on.
            if not started:
                raise
