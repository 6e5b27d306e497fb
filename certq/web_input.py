"""Query strings into pydantic models, and pydantic errors into 400 problems naming the field."""

from __future__ import annotations

from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict, ValidationError
from pydantic.alias_generators import to_camel
from starlette.requests import Request

from certq.problems import Problem

M = TypeVar("M", bound=BaseModel)


class Query(BaseModel):
    """A query string: values arrive as text and are converted; unknown parameters are ignored."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="ignore")


def field_path(loc: tuple[int | str, ...], root: str = "") -> str:
    """('modelIds', 2) -> 'modelIds[2]'; () -> root."""
    path = root
    for part in loc:
        path = f"{path}[{part}]" if isinstance(part, int) else (f"{path}.{part}" if path else str(part))
    return path or "body"


def validation_problem(exc: ValidationError, *, root: str = "", status: int = 400) -> Problem:
    errors = []
    for error in exc.errors(include_url=False, include_input=False):
        kind = error["type"]
        where = field_path(tuple(error["loc"]), root)
        if kind == "json_invalid":
            return Problem(400, f"the body is not valid JSON: {error['msg']}", field="body", kind="malformed-json")
        message = {
            "extra_forbidden": "unknown field",
            "missing": "required",
            "model_type": "must be a JSON object",
            "model_attributes_type": "must be a JSON object",
        }.get(kind, error["msg"].removeprefix("Value error, "))
        if kind == "string_pattern_mismatch":
            message = (
                "a region is letters, digits and . _ : - (e.g. us-east-1 or local)"
                if where.split("[")[0] in ("region", "regions")
                else "control characters are not allowed"
            )
        errors.append({"field": where, "message": message})
    first = errors[0]
    detail = f"{first['field']}: {first['message']}"
    if len(errors) > 1:
        detail += f" (and {len(errors) - 1} more)"
    return Problem(status, detail, field=first["field"], kind="invalid-input", errors=errors)


def parse_query(request: Request, model: type[M]) -> M:
    """`model` from the query string; a parameter given twice, or a bad value, is a 400 naming it."""
    values: dict[str, Any] = {}
    for key in request.query_params:
        items = request.query_params.getlist(key)
        if len(items) > 1:
            raise Problem(400, f"{key} is given {len(items)} times", field=key, kind="invalid-input")
        values[key] = items[0]
    try:
        return model.model_validate(values)
    except ValidationError as exc:
        raise validation_problem(exc) from None
