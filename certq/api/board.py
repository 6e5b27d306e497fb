"""Mounting the dashboard on the API: it reads the API's queue and store and calls the API's certify and
schedule logic."""

from __future__ import annotations

from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError
from starlette.routing import Mount

from certq.api import certify as certify_logic
from certq.api import schedule_routes
from certq.api.problems import Problem, validation_problem
from certq.api.schedule_schemas import ScheduleCreate, ScheduleUpdate
from certq.api.services import Services
from certq.dashboard import BoardQueue, Certify, CertifyOrder, ChangeSchedule, ScheduleChange, create_board
from certq.store import Store

M = TypeVar("M", bound=BaseModel)


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

    @property
    def schedules(self) -> ChangeSchedule | None:
        return self._schedules if self._services.store is not None else None

    async def _schedules(self, change: ScheduleChange) -> dict[str, Any]:
        """The same input models, checks, store calls and audit as POST, PATCH and DELETE /api/schedules."""
        store = self._services.need_store()
        if change.verb == "create":
            body = _parsed(change.body, ScheduleCreate)
            out = await schedule_routes.create_with(store, body, change.actor, change.remote_addr)
        else:
            current = await schedule_routes.existing(store, change.schedule_id or "")
            if change.verb == "update":
                update = _parsed(change.body, ScheduleUpdate)
                out = await schedule_routes.update_with(store, current, update, change.actor, change.remote_addr)
            else:
                out = await schedule_routes.delete_with(store, current, change.actor, change.remote_addr)
        return out.model_dump(mode="json", by_alias=True)


def _parsed(raw: bytes, model: type[M]) -> M:
    # As parse_body reads a request's body (strict JSON, the field named), for a body the dashboard read.
    if not raw.strip():
        raise Problem(400, "the body is empty; send a JSON object", field="body", kind="malformed-json")
    try:
        return model.model_validate_json(raw, strict=True)
    except ValidationError as exc:
        raise validation_problem(exc) from None


def board_route(services: Services) -> Mount:
    """The dashboard at BULL_BOARD_PATH (its own basic auth; the /api bearer tokens do not apply to it)."""
    return Mount(services.settings.board_path, app=create_board(services.settings, ServicesDeps(services)))
