"""RFC 9457 problem details: the one body shape every certq HTTP server answers errors in."""

from __future__ import annotations

from http import HTTPStatus
from typing import Any

import orjson
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

PROBLEM_TYPE = "application/problem+json"

TITLES = {
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    409: "Conflict",
    413: "Content Too Large",
    415: "Unsupported Media Type",
    422: "Unprocessable Content",
    429: "Too Many Requests",
    500: "Internal Server Error",
    503: "Service Unavailable",
}


def title_of(status: int) -> str:
    """The table's title, else the HTTP reason phrase, else "Error"."""
    if status in TITLES:
        return TITLES[status]
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Error"


class Problem(Exception):
    """Raised in a route (or built by middleware): becomes a problem+json answer.

    The body is `{"type": "/problems/<kind>", "title", "status", "detail"}` plus `instance` (the request
    path), `field` (the offending input) and `errors` (one `{field, message}` per input error) when known.
    `kind` defaults to the title's slug ("Not Found" -> "not-found").
    """

    def __init__(
        self,
        status: int,
        detail: str,
        *,
        field: str | None = None,
        kind: str | None = None,
        errors: list[dict[str, str]] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.field = field
        self.kind = kind or title_of(status).lower().replace(" ", "-")
        self.errors = errors
        self.headers = headers or {}

    def body(self, instance: str | None = None) -> dict[str, Any]:
        body: dict[str, Any] = {
            "type": f"/problems/{self.kind}",
            "title": title_of(self.status),
            "status": self.status,
            "detail": self.detail,
        }
        if instance:
            body["instance"] = instance
        if self.field is not None:
            body["field"] = self.field
        if self.errors:
            body["errors"] = self.errors
        return body

    def response(self, instance: str | None = None) -> Response:
        return Response(
            orjson.dumps(self.body(instance)), status_code=self.status, media_type=PROBLEM_TYPE, headers=self.headers
        )

    async def answer(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Send the answer from ASGI middleware that refuses a request before the app sees it."""
        await self.response(scope.get("path"))(scope, receive, send)
