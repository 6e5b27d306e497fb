"""Mounting the dashboard on the API: it reads the API's queue and store and calls the API's certify logic."""

from __future__ import annotations

from typing import Any

from starlette.routing import Mount

from certq.api import certify as certify_logic
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
        """The same validation, logic and answers as POST /certify-model, /certify-multiple and /certify-all."""
        return await certify_logic.certify_order(
            self._services, order.mode, list(order.model_ids), list(order.regions), order.priority
        )


def board_route(services: Services) -> Mount:
    """The dashboard at BULL_BOARD_PATH (its own basic auth; the /api bearer tokens do not apply to it)."""
    return Mount(services.settings.board_path, app=create_board(services.settings, ServicesDeps(services)))
