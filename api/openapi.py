"""The OpenAPI 3.1 document, written from the route table (api.endpoints) and the very
pydantic models the handlers validate and answer with, so it cannot drift from them.
Built once per app: path parameters list the configured queues.
"""

from __future__ import annotations

from http import HTTPStatus
from importlib.metadata import version
from typing import Annotated, Any, Union

from pydantic import Field, TypeAdapter

from api.endpoints import ENDPOINTS, Endpoint
from api.routes.records import RECORD_ID_PATTERNS
from api.schemas import ErrorBody
from config import Settings
from streams.keys import JOB_ID_RE

REF = "#/components/schemas/{model}"
SECURITY_SCHEME = "bearerAuth"
IDEMPOTENCY_KEY_PATTERN = "^[!-~]{1,255}$"  # visible ASCII, as api.routes.jobs checks it


def build_openapi(settings: Settings, endpoints: tuple[Endpoint, ...] = ENDPOINTS) -> dict[str, Any]:
    inputs: list[tuple[Any, Any, TypeAdapter[Any]]] = [("error", "serialization", TypeAdapter(ErrorBody))]
    for i, ep in enumerate(endpoints):
        if ep.body is not None:
            inputs.append(((i, "body"), "validation", TypeAdapter(_body_type(ep))))
        if ep.query is not None:
            inputs.append(((i, "query"), "validation", TypeAdapter(ep.query)))
        for status, answer in ep.responses.items():
            inputs.append(((i, status), "serialization", TypeAdapter(answer)))
    schemas, definitions = TypeAdapter.json_schemas(inputs, ref_template=REF)
    components: dict[str, Any] = definitions.get("$defs", {})
    error = schemas[("error", "serialization")]

    paths: dict[str, dict[str, Any]] = {}
    query_models = set()
    for i, ep in enumerate(endpoints):
        operation: dict[str, Any] = {
            "operationId": ep.handler.__name__,
            "summary": ep.summary,
            "tags": [ep.tag],
            "parameters": _path_parameters(ep.path, settings),
            "responses": {
                **{str(status): _content(HTTPStatus(status).phrase, schemas[((i, status), "serialization")],
                                         ep.media_type)
                   for status, _ in ep.responses.items()},
                **{str(status): _content(HTTPStatus(status).phrase, error) for status in ep.errors},
            },
            "security": [{SECURITY_SCHEME: []}] if ep.role is not None else [],
        }
        description = f"Role: {ep.role}." if ep.role is not None else "Open to anyone."
        operation["description"] = f"{description} {ep.notes}".strip()
        if ep.query is not None:
            name = _ref_name(schemas[((i, "query"), "validation")])
            query_models.add(name)
            operation["parameters"] += _query_parameters(components[name])
        if ep.path == "/api/jobs" and ep.method == "POST":
            operation["parameters"].append({
                "name": "Idempotency-Key", "in": "header", "required": False,
                "description": "the same key within its window adds nothing and answers the first job",
                "schema": {"type": "string", "pattern": IDEMPOTENCY_KEY_PATTERN}})
        if ep.body is not None:
            operation["requestBody"] = {"required": True, "content": {
                "application/json": {"schema": schemas[((i, "body"), "validation")]}}}
        paths.setdefault(ep.path, {})[ep.method.lower()] = operation
    for name in query_models:
        del components[name]  # spelled out as parameters instead

    return {
        "openapi": "3.1.0",
        "info": {"title": "tgjobs", "version": version("tgjobs"),
                 "description": "Jobs and events on Redis Streams: add jobs, watch queues, streams and "
                                "consumer groups, manage jobs, queues and dead letters."},
        "paths": paths,
        "components": {"schemas": components,
                       "securitySchemes": {SECURITY_SCHEME: {"type": "http", "scheme": "bearer"}}},
    }


def _body_type(ep: Endpoint) -> Any:
    if isinstance(ep.body, tuple):
        return Annotated[Union[ep.body], Field(discriminator=ep.discriminator)]  # noqa: UP007
    return ep.body


def _content(description: str, schema: dict[str, Any], media_type: str = "application/json") -> dict[str, Any]:
    return {"description": description, "content": {media_type: {"schema": schema}}}


def _ref_name(schema: dict[str, Any]) -> str:
    return str(schema["$ref"]).rsplit("/", 1)[1]


def _path_parameters(path: str, settings: Settings) -> list[dict[str, Any]]:
    known = {
        "queueName": {"type": "string", "enum": list(settings.queues)},
        "jobId": {"type": "string", "pattern": JOB_ID_RE.pattern},
        **{name: {"type": "string", "pattern": pattern.pattern} for name, pattern in RECORD_ID_PATTERNS.items()},
    }
    named = [name.strip("{}") for name in path.split("/") if name.startswith("{")]
    return [{"name": name, "in": "path", "required": True, "schema": known.get(name, {"type": "string"})}
            for name in named]


def _query_parameters(model_schema: dict[str, Any]) -> list[dict[str, Any]]:
    required = set(model_schema.get("required", ()))
    parameters = []
    for name, schema in model_schema["properties"].items():
        schema = dict(schema)
        description = schema.pop("description", None)
        schema.pop("title", None)
        parameter = {"name": name, "in": "query", "required": name in required, "schema": _without_null(schema)}
        if description:
            parameter["description"] = description
        parameters.append(parameter)
    return parameters


def _without_null(schema: dict[str, Any]) -> dict[str, Any]:
    """A query string cannot carry null: an optional parameter is one left out."""
    options = [s for s in schema.get("anyOf", ()) if s != {"type": "null"}]
    if "anyOf" not in schema or len(options) != 1:
        return schema
    rest = {k: v for k, v in schema.items() if k not in ("anyOf", "default")}
    return {**options[0], **rest}
