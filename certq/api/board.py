"""Mounting the dashboard on the API: it reads the API's queue and store and calls the API's certify logic."""

from __future__ import annotations

from typing import Any
from uuid import UUID

from starlette.routing import Mount

from certq.api import certify as certify_logic
from certq.api.problems import Problem
from certq.api.services import Services
from certq.dashboard import BoardQueue, Certify, CertifyOrder, create_board
from certq.store import Store


class ServicesDeps:
    """The dashboard's view of the API's Services (filled in by the API's lifespan)."""

    def __init__(self, services: Services) -> None:
        self._services = services

    @property
    def queue(self) -> BoardQueue | None:
        found: BoardQueue | None = self._services.queue
        return found

    @property
    def store(self) -> Store | None:
        return self._services.store

    @property
    def certify(self) -> Certify | None:
        return self._certify if self._services.store is not None else None

    async def _certify(self, order: CertifyOrder) -> tuple[int, dict[str, Any]]:
        """The same logic (and answers) as POST /certify-model, /certify-multiple and /certify-all."""
        try:
            ids = [_uuid(value, index) for index, value in enumerate(order.model_ids)]
            if order.mode == "single":
                return await certify_logic.certify_one(self._services, ids[0], order.regions[0], order.priority)
            return await certify_logic.certify_batch(
                self._services, None if order.mode == "all" else ids, order.regions, order.priority
            )
        except Problem as exc:
            body: dict[str, Any] = {"title": "Refused", "status": exc.status, "detail": exc.detail}
            if exc.field is not None:
                body["field"] = exc.field
            return exc.status, body


def _uuid(value: str, index: int) -> UUID:
    try:
        return UUID(value)
    except ValueError:
        raise Problem(400, f"modelIds[{index}] must be a UUID", field=f"modelIds[{index}]") from None


def board_route(services: Services) -> Mount:
    """The dashboard at BULL_BOARD_PATH (its own basic auth; the /api bearer tokens do not apply to it)."""
    return Mount(services.settings.board_path, app=create_board(services.settings, ServicesDeps(services)))
