"""JSON answers (orjson) and the request's Services."""

from __future__ import annotations

from typing import Any

import orjson
from pydantic import BaseModel
from starlette.requests import Request
from starlette.responses import Response

from certq.api.services import Services


def services_of(request: Request) -> Services:
    found: Services = request.app.state.services
    return found


def answer(status: int, body: BaseModel | list[BaseModel] | dict[str, Any]) -> Response:
    if isinstance(body, BaseModel):
        content = body.model_dump_json(by_alias=True).encode()
    elif isinstance(body, list):
        content = orjson.dumps([item.model_dump(mode="json", by_alias=True) for item in body])
    else:
        content = orjson.dumps(body)
    return Response(content, status_code=status, media_type="application/json")
