"""Reading requests into the models of api.schemas, and writing models as responses.

Every failure becomes an ApiError: unparsable JSON is a 400, a value that fails its
model a 422 listing every failing field. Bodies are parsed whatever their
Content-Type, as the seed's curl examples do not always set one.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Sequence
from typing import Any, Literal, TypeVar

import orjson
from aiohttp import web
from pydantic import BaseModel, ValidationError

from api.errors import BadRequest, Invalid
from api.schemas import ActionEnvelope, ErrorDetail
from processors.intake import Problem

M = TypeVar("M", bound=BaseModel)
Location = Literal["body", "query", "path", "header"]


async def read_json(request: web.Request) -> Any:
    """The body as JSON; aiohttp raises 413 itself past the app's client_max_size."""
    body = await request.read()
    if not body.strip():
        raise BadRequest("the request body is empty; send a JSON object")
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise BadRequest(f"the request body is not valid JSON: {exc}") from None


def validated(model: type[M], raw: Any, location: Location = "body") -> M:
    try:
        return model.model_validate(raw)
    except ValidationError as exc:
        raise invalid(exc, location) from None


def invalid(exc: ValidationError, location: Location) -> Invalid:
    details = [ErrorDetail(location=location, path=list(e["loc"]), message=e["msg"])
               for e in exc.errors(include_url=False, include_input=False)]
    return Invalid(f"{len(details)} invalid field{'s' if len(details) != 1 else ''} in the {location}", details)


def invalid_field(location: Location, path: Sequence[str | int], message: str) -> Invalid:
    where = f"{location} field {'.'.join(map(str, path))}" if path else location
    return Invalid(f"invalid {where}: {message}", [ErrorDetail(location=location, path=list(path), message=message)])


def body_details(problems: Iterable[Problem], prefix: Sequence[str | int] = ()) -> list[ErrorDetail]:
    """A refused signal's problems as error details, their paths under `prefix`."""
    return [ErrorDetail(location="body", path=[*prefix, *p.path], message=p.message) for p in problems]


def query(request: web.Request, model: type[M]) -> M:
    """The query string as `model`; a parameter given twice counts with its first value."""
    return validated(model, {name: request.query[name] for name in request.query}, "query")


def chosen_action(raw: Any, allowed: Collection[str]) -> str:
    """The `action` a body names: 422 when it names none, 400 when it names an unknown one."""
    action = validated(ActionEnvelope, raw).action
    if action not in allowed:
        raise BadRequest(f"unknown action {action!r}; use one of: {', '.join(allowed)}")
    return action


def respond(model: BaseModel, status: int = 200, *, exclude: set[str] | None = None) -> web.Response:
    return web.Response(status=status, body=model.model_dump_json(exclude=exclude), content_type="application/json")
