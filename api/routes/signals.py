"""POST /api/signals: ingest one signal, a JSON array of them, or NDJSON (one signal per
line, Content-Type application/x-ndjson), at most API_MAX_SIGNALS items per request.

Every item is checked and encoded by the app's signal intake (SignalData and the
configured signal types, as POST /api/jobs checks a signal) before anything is written;
the valid ones go to Redis in one pipeline (the fast path's wire format, through the
streams SDK). An invalid item makes the whole request a 422 listing every failing item
by index, and nothing is written; with ?partial=true the valid items are written and
the invalid ones listed under `rejected`. A signal over MAX_ENTRY_BYTES makes the whole
request a 413 naming it and the limit (the worker would dead-letter it). A signal of a
company outside the token's scope makes it a 403 (api.scope).
"""

from __future__ import annotations

from typing import Any

import orjson
from aiohttp import web

from api.errors import ApiError, BadRequest, Invalid
from api.messages import body_details, query, read_json, respond
from api.record_schemas import SignalRejected, SignalsAccepted, SignalsQuery
from api.schemas import ErrorDetail
from api.scope import require_scope
from api.state import REDIS, SETTINGS, SIGNAL_INTAKE
from processors.intake import InvalidSignal, SignalIntake
from streams.errors import EntryTooLarge
from streams.replication import ReplicaWait
from streams.signals_sdk import append_signals

NDJSON = "application/x-ndjson"


class TooManySignals(ApiError):
    status, code = 413, "payload_too_large"


async def ingest_signals(request: web.Request) -> web.Response:
    partial = query(request, SignalsQuery).partial
    limit = request.app[SETTINGS].api_max_signals
    items, batch = await _items(request)
    if not items:
        raise Invalid("no signals in the request; send one signal, a JSON array or NDJSON lines",
                      [ErrorDetail(location="body", path=[], message="at least one signal is required")])
    if len(items) > limit:
        raise TooManySignals(f"{len(items)} signals in one request; at most {limit} (API_MAX_SIGNALS)")
    for index, item in enumerate(items):
        if isinstance(item, dict) and isinstance(item.get("companyId"), str):
            await require_scope(request, company=item["companyId"].strip(), where=f"signal {index}: " if batch else "")
    intake = request.app[SIGNAL_INTAKE]
    entries: list[tuple[str, str]] = []
    rejected: list[SignalRejected] = []
    for index, item in enumerate(items):
        prefix: list[str | int] = [index] if batch else []
        try:
            details = _check(intake, item, prefix, entries)
        except EntryTooLarge as exc:  # the whole request is refused, ?partial or not
            raise EntryTooLarge(exc.size, exc.limit, f"signal {index}: " if batch else "") from None
        if details:
            rejected.append(SignalRejected(index=index, details=details))
    if rejected and not partial:
        details = [d for r in rejected for d in r.details]
        raise Invalid(f"{len(rejected)} invalid signal{'s' if len(rejected) != 1 else ''} of {len(items)}; "
                      "nothing was written (?partial=true writes the valid ones)", details)
    wait = ReplicaWait(request.app[REDIS], request.app[SETTINGS])
    ids = await append_signals(wait, intake.encoder, entries, limit) if entries else []
    return respond(SignalsAccepted(accepted=len(ids), ids=ids, rejected=rejected), 202)


def _check(intake: SignalIntake, item: Any, prefix: list[str | int],
           entries: list[tuple[str, str]]) -> list[ErrorDetail]:
    """Appends the item's entry when it is valid; else returns its errors."""
    if isinstance(item, _Unparsable):
        return [ErrorDetail(location="body", path=prefix, message=item.message)]
    try:
        entries.append(intake.encode(item))
    except InvalidSignal as exc:
        return body_details(exc.problems, prefix)
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
