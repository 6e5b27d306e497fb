"""How much of a request head, and how long for it, the API and the health port accept from a client."""

from __future__ import annotations

import asyncio
from typing import Any, ClassVar, Literal, TypedDict

import h11
from uvicorn.config import Config
from uvicorn.protocols.http.h11_impl import STATUS_PHRASES, H11Protocol
from uvicorn.server import ServerState

MAX_HEADER_BYTES = 64 * 1024
"""Request line and headers together, buffered at most this (plus one socket read) before a 431."""

MAX_HEADERS = 100
"""Header fields in one request head (Apache's LimitRequestFields); more is a 431."""

HEADER_TIMEOUT_S = 10.0
"""From connection open, or the end of the previous response, to a complete request head; then 408 and close
(just close when nothing of a head arrived)."""

KEEP_ALIVE_S = 5
"""An idle keep-alive connection with nothing sent is closed after this (uvicorn's own timer)."""


class ServerOptions(TypedDict):
    http: type[asyncio.Protocol]
    timeout_keep_alive: int
    ws: Literal["none"]


def server_options() -> ServerOptions:
    """Keyword arguments for `uvicorn.Config` / `uvicorn.run` that every certq HTTP server passes."""
    # Neither server speaks WebSocket: "none" keeps the upgrade path (and its own buffers) out of reach.
    return ServerOptions(http=LimitedH11Protocol, timeout_keep_alive=KEEP_ALIVE_S, ws="none")


class _LimitedConnection(h11.Connection):
    """h11's server side that also refuses too many header fields and remembers the status a refusal deserves."""

    def __init__(self, max_header_bytes: int, max_headers: int) -> None:
        super().__init__(h11.SERVER, max_incomplete_event_size=max_header_bytes)
        self.max_headers = max_headers
        self.refusal_status = 400

    def next_event(self) -> h11.Event | type[h11.NEED_DATA] | type[h11.PAUSED]:
        try:
            event = super().next_event()
        except h11.RemoteProtocolError as exc:
            self.refusal_status = exc.error_status_hint
            raise
        if isinstance(event, h11.Request) and len(event.headers) > self.max_headers:
            self.refusal_status = 431
            raise h11.RemoteProtocolError(f"more than {self.max_headers} request headers", error_status_hint=431)
        return event


class LimitedH11Protocol(H11Protocol):
    """uvicorn's h11 protocol with bounded request heads and a deadline for each one.

    httptools (uvicorn's default) buffers a header of any size; h11 refuses a head over `max_header_bytes`
    with 431. uvicorn has no deadline for a head, so a client trickling a byte a second holds a connection
    forever: a head not complete `header_timeout_s` after the connection opens (or the previous response
    ends) is answered 408 and the connection closed. Limits are class attributes so tests can shorten them.
    """

    max_header_bytes: ClassVar[int] = MAX_HEADER_BYTES
    max_headers: ClassVar[int] = MAX_HEADERS
    header_timeout_s: ClassVar[float] = HEADER_TIMEOUT_S

    def __init__(
        self,
        config: Config,
        server_state: ServerState,
        app_state: dict[str, Any],
        _loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        super().__init__(config, server_state, app_state, _loop)
        self._limited = _LimitedConnection(self.max_header_bytes, self.max_headers)
        self.conn = self._limited
        self._head_deadline: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._watch_head()

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        self._watch_head()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        self._watch_head()

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_head_deadline()
        super().connection_lost(exc)

    def send_400_response(self, msg: str) -> None:
        # uvicorn answers every parse error 400; an oversized head deserves the 431 h11 (or the count) asked for.
        self._refuse(self._limited.refusal_status, msg)

    def _watch_head(self) -> None:
        """Arm the deadline while a request head is awaited (the client is IDLE); drop it once one arrived."""
        awaiting = self.conn.their_state is h11.IDLE and not self.transport.is_closing()
        if not awaiting:
            self._cancel_head_deadline()
        elif self._head_deadline is None:  # not re-armed per byte: that is exactly what a slow client wants
            self._head_deadline = self.loop.call_later(self.header_timeout_s, self._head_timed_out)

    def _cancel_head_deadline(self) -> None:
        if self._head_deadline is not None:
            self._head_deadline.cancel()
            self._head_deadline = None

    def _head_timed_out(self) -> None:
        self._head_deadline = None
        if self.conn.their_state is not h11.IDLE or self.transport.is_closing():
            return
        if self.conn.trailing_data[0]:
            self._refuse(408, f"no complete request head within {self.header_timeout_s:g}s")
        else:  # nothing asked (a preconnected or idle socket): a 408 could be taken as the answer to a request sent now
            self.transport.close()

    def _refuse(self, status: int, msg: str) -> None:
        headers = [(b"content-type", b"text/plain; charset=utf-8"), (b"connection", b"close")]
        try:
            for event in (
                h11.Response(status_code=status, headers=headers, reason=STATUS_PHRASES[status]),
                h11.Data(data=msg.encode("ascii")),
                h11.EndOfMessage(),
            ):
                self.transport.write(self.conn.send(event) or b"")
        except h11.LocalProtocolError:  # a response already under way: closing is all that is left
            pass
        self.transport.close()
