"""POST /api/signals: ingest one signal, a JSON array of them, or NDJSON (one signal per
line, Content-Type application/x-ndjson), at most API_MAX_SIGNALS items per request.

Every item is validated with SignalData (and the configured signal types) before
anything is written; the valid ones go to Redis in one pipeline (the fast path's wire
format, through the streams SDK). An invalid item makes the whole request a 422 listing
every failing item by index, and nothing is written; with ?partial=true the valid items
are written and the invalid ones listed under `rejected`.
"""

from __future__ import annotations

from typing import Any

import orjson
from aiohttp import web
from pydantic import ValidationError

from api.errors import ApiError, BadRequest, Invalid
from api.messages import query, read_json, respond
from api.schemas import ErrorDetail, SignalRejected, SignalsAccepted, SignalsQuery
from api.state import REDIS, SETTINGS, SIGNAL_TYPES
from processors.models import SignalData
from streams.errors import InvalidJob
from streams.signals_sdk import SIGNALS_QUEUE, SignalPublisher

NDJSON = "application/x-ndjson"


class TooManySignals(ApiError):
    status, code = 413, "payload_too_large"


async def ingest_signals(request: web.Request) -> web.Response:
    partial = query(request, SignalsQuery).partial
    settings = request.app[SETTINGS]
    limit = settings.api_max_signals
    items, batch = await _items(request)
    if not items:
        raise Invalid("no signals in the request; send one signal, a JSON array or NDJSON lines",
                      [ErrorDetail(location="body", path=[], message="at least one signal is required")])
    if len(items) > limit:
        raise TooManySignals(f"{len(items)} signals in one request; at most {limit} (API_MAX_SIGNALS)")
    publisher = SignalPublisher(request.app[REDIS], settings, queue=SIGNALS_QUEUE, chunk_size=limit)
    types = frozenset(request.app[SIGNAL_TYPES])
    entries: list[tuple[str, str]] = []
    rejected: list[SignalRejected] = []
    for index, item in enumerate(items):
        prefix: list[str | int] = [index] if batch else []
        details = _check(publisher, item, types, prefix, entries)
        if details:
            rejected.append(SignalRejected(index=index, details=details))
    if rejected and not partial:
        details = [d for r in rejected for d in r.details]
        raise Invalid(f"{len(rejected)} invalid signal{'s' if len(rejected) != 1 else ''} of {len(items)}; "
                      "nothing was written (?partial=true writes the valid ones)", details)
    ids = await publisher.publish_encoded(entries) if entries else []
    return respond(SignalsAccepted(accepted=len(ids), ids=ids, rejected=rejected), 202)


def _check(publisher: SignalPublisher, item: Any, types: frozenset[str], prefix: list[str | int],
           entries: list[tuple[str, str]]) -> list[ErrorDetail]:
    """Appends the item's entry when it is valid; else returns its errors."""
    if isinstance(item, _Unparsable):
        return [ErrorDetail(location="body", path=prefix, message=item.message)]
    try:
        signal = SignalData.model_validate(item)
    except ValidationError as exc:
        return [ErrorDetail(location="body", path=[*prefix, *e["loc"]], message=e["msg"])
                for e in exc.errors(include_url=False, include_input=False)]
    if signal.signalType not in types:
        return [ErrorDetail(location="body", path=[*prefix, "signalType"],
                            message=f"unknown signal type; use one of: {', '.join(sorted(types))}")]
    try:
        entries.append(publisher.encoder.encode(signal))
    except InvalidJob as exc:
        return [ErrorDetail(location="body", path=prefix, message=str(exc))]
    return []


class _Unparsable:
    def __init__(self, message: str) -> None:
        self.message = message


async def _items(request: web.Request) -> tuple[list[Any], bool]:
    """The request's items, and whether it was a batch (array or NDJSON)."""
    if request.content_type == NDJSON:
        body = await request.read()
        items: list[Any] = []
        for number, line in enumerate(body.splitlines(), 1):
            if not line.strip():
                continue
            try:
                items.append(orjson.loads(line))
            except orjson.JSONDecodeError as exc:
                items.append(_Unparsable(f"line {number} is not valid JSON: {exc}"))
        return items, True
    raw = await read_json(request)
    if isinstance(raw, list):
        return raw, True
    if isinstance(raw, dict):
        return [raw], False
    raise BadRequest("send one signal (a JSON object), a JSON array of signals, or NDJSON "
                     f"(Content-Type {NDJSON})")
