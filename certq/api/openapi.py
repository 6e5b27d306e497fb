"""The route table of the API and the OpenAPI 3.1 document generated from its pydantic models."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel
from pydantic.json_schema import models_json_schema
from starlette.requests import Request
from starlette.responses import Response

from certq.api.auth import required_role
from certq.api.schemas import Problem as ProblemSchema

Handler = Callable[[Request], Awaitable[Response]]


@dataclass(frozen=True)
class Endpoint:
    method: str
    path: str
    handler: Handler
    summary: str
    answers: dict[int, type[BaseModel] | None]
    body: type[BaseModel] | None = None
    query: type[BaseModel] | None = None
    path_params: tuple[str, ...] = ()
    tags: tuple[str, ...] = ()
    list_answer: set[int] = field(default_factory=set)
    idempotent_post: bool = False
    public: bool = False


_ERRORS = {
    400: "bad input (field named)",
    401: "missing or wrong bearer token",
    403: "the token's role is below the operation's x-certq-role",
    404: "not found",
    413: "body too large",
    415: "not JSON",
    422: "not certifiable / key reused",
}


def build_openapi(endpoints: list[Endpoint], *, title: str, version: str) -> dict[str, Any]:
    models: set[type[BaseModel]] = {ProblemSchema}
    for e in endpoints:
        models.update(m for m in (e.body, *e.answers.values()) if m is not None)
    _, schemas = models_json_schema(
        [(m, "validation" if _is_input(m, endpoints) else "serialization") for m in sorted(models, key=str)],
        by_alias=True,
        ref_template="#/components/schemas/{model}",
    )
    paths: dict[str, dict[str, Any]] = {}
    for e in endpoints:
        operation: dict[str, Any] = {"summary": e.summary, "operationId": e.handler.__name__, "tags": list(e.tags)}
        if not e.public:
            role = required_role(e.method, e.path).label
            operation["x-certq-role"] = role
            operation["description"] = f"Needs a bearer token with role {role} or above (read < certify < admin)."
        parameters: list[dict[str, Any]] = [
            {"name": p, "in": "path", "required": True, "schema": {"type": "string", "format": "uuid"}}
            for p in e.path_params
        ]
        if e.query is not None:
            query_schema = e.query.model_json_schema(by_alias=True)
            for name, prop in query_schema.get("properties", {}).items():
                parameters.append({"name": name, "in": "query", "required": False, "schema": prop})
        if e.idempotent_post:
            parameters.append(
                {
                    "name": "Idempotency-Key",
                    "in": "header",
                    "required": False,
                    "schema": {"type": "string", "minLength": 1, "maxLength": 255, "pattern": "^[ -~]+$"},
                }
            )
        if parameters:
            operation["parameters"] = parameters
        if e.body is not None:
            operation["requestBody"] = {
                "required": True,
                "content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{e.body.__name__}"}}},
            }
        responses: dict[str, Any] = {}
        for status, model in e.answers.items():
            content: dict[str, Any] = {}
            if model is not None:
                ref: dict[str, Any] = {"$ref": f"#/components/schemas/{model.__name__}"}
                if status in e.list_answer:
                    ref = {"type": "array", "items": ref}
                content = {"application/json": {"schema": ref}}
            responses[str(status)] = {"description": "OK" if status < 300 else "", "content": content}
        problem = {"application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}}
        for status, text in _ERRORS.items():
            if e.public and status in (401, 403):
                continue
            responses.setdefault(str(status), {"description": text, "content": problem})
        operation["responses"] = responses
        if not e.public:
            operation["security"] = [{"bearer": []}]
        paths.setdefault(e.path, {})[e.method.lower()] = operation
    return {
        "openapi": "3.1.0",
        "info": {"title": title, "version": version},
        "paths": paths,
        "components": {
            "schemas": schemas.get("$defs", {}),
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
    }


def _is_input(model: type[BaseModel], endpoints: list[Endpoint]) -> bool:
    return any(e.body is model for e in endpoints)
