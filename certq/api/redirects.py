"""Redirects name a path, never the request's Host header, and a trailing-slash one never skips a login."""

from __future__ import annotations

from urllib.parse import unquote, urlsplit, urlunsplit

from starlette.types import ASGIApp, Message, Receive, Scope, Send


class RelativeRedirects:
    """ASGI middleware: a 3xx `Location` of `scheme://host/path?query` becomes `/path?query`.

    A client choosing its Host header must not choose where the answer sends a browser (a stored link,
    a cache, a proxy that forwards Host unchecked would otherwise carry the attacker's host).

    The router's redirect of a GET or HEAD to the same path plus `/` (`/admin/queues` to the dashboard
    mounted at `/admin/queues/`) is held back while the target is asked: when it wants credentials, its
    401 is the answer, so the client signs in at the address it was given (credentials in the URL, the
    browser's prompt) and follows the redirect signed in. Any other answer of the target lets the
    redirect go out unchanged.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        asked = dict(scope)  # before the router adds to it
        held: list[Message] = []

        async def relative(message: Message) -> None:
            if message["type"] == "http.response.start" and 300 <= message["status"] < 400:
                message["headers"] = [
                    (name, _path_only(value) if name.lower() == b"location" else value)
                    for name, value in message.get("headers", [])
                ]
                if _adds_a_slash(asked, message):
                    held.append(message)
                    return
            if held:
                held.append(message)
                return
            await send(message)

        await self.app(scope, receive, relative)
        if held:
            for message in await self._challenge_first(asked, receive, held):
                await send(message)

    async def _challenge_first(self, asked: Scope, receive: Receive, redirect: list[Message]) -> list[Message]:
        target = dict(asked, path=asked["path"] + "/")
        if "raw_path" in asked:
            target["raw_path"] = asked["raw_path"] + b"/"
        answer: list[Message] = []

        async def keep(message: Message) -> None:
            answer.append(message)

        await self.app(target, receive, keep)
        return answer if answer and answer[0]["status"] == 401 else redirect


def _adds_a_slash(asked: Scope, start: Message) -> bool:
    if asked["method"] not in ("GET", "HEAD"):  # the target is asked unbidden: only a request without effects
        return False
    location = next((value for name, value in start.get("headers", []) if name.lower() == b"location"), None)
    if location is None:
        return False
    parts = urlsplit(location.decode("latin-1"))
    path: str = asked["path"]
    query: bytes = asked.get("query_string", b"")
    return unquote(parts.path) == path + "/" and parts.query == query.decode("latin-1")


def _path_only(location: bytes) -> bytes:
    parts = urlsplit(location.decode("latin-1"))
    path = parts.path if parts.path.startswith("/") else "/" + parts.path
    path = "/" + path.lstrip("/")  # never `//host`: a scheme-relative URL would name a host again
    return urlunsplit(("", "", path, parts.query, parts.fragment)).encode("latin-1")
