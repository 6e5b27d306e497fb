"""Redirects name a path, never the request's Host header (Starlette builds absolute URLs from it)."""

from __future__ import annotations

from urllib.parse import urlsplit, urlunsplit

from starlette.types import ASGIApp, Message, Receive, Scope, Send


class RelativeRedirects:
    """ASGI middleware: a 3xx `Location` of `scheme://host/path?query` becomes `/path?query`.

    A client choosing its Host header must not choose where the answer sends a browser (a stored link,
    a cache, a proxy that forwards Host unchecked would otherwise carry the attacker's host).
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def relative(message: Message) -> None:
            if message["type"] == "http.response.start" and 300 <= message["status"] < 400:
                message["headers"] = [(name, _path_only(value) if name.lower() == b"location" else value)
                                      for name, value in message.get("headers", [])]
            await send(message)

        await self.app(scope, receive, relative)


def _path_only(location: bytes) -> bytes:
    parts = urlsplit(location.decode("latin-1"))
    path = parts.path if parts.path.startswith("/") else "/" + parts.path
    path = "/" + path.lstrip("/")  # never `//host`: a scheme-relative URL would name a host again
    return urlunsplit(("", "", path, parts.query, parts.fragment)).encode("latin-1")
