"""/api/sink/dead: the rows PostgreSQL rejected (with its reason), listed by page,
replayed into their company's outbox (the sink writes them again), or purged."""

from __future__ import annotations

from aiohttp import web

from api.messages import query, read_json, respond, validated
from api.routes.common import audit
from api.schemas import PageQuery
from api.sink_schemas import (SinkDeadLetterPage, SinkDeadLetterRequest, SinkDeadLetterView, SinkPurgeResult,
                              SinkReplayResult)
from api.state import REDIS, SETTINGS
from processors.outbox_admin import OutboxAdmin

TARGET = "sink"  # what the audit trail names as the target


def _admin(request: web.Request) -> OutboxAdmin:
    return OutboxAdmin(request.app[REDIS], request.app[SETTINGS])


async def sink_dead_letters(request: web.Request) -> web.Response:
    params = query(request, PageQuery)
    letters = await _admin(request).dead_letters(params.cursor or "-", params.limit + 1)
    page = letters[:params.limit]
    return respond(SinkDeadLetterPage(items=[SinkDeadLetterView.of(d) for d in page],
                                      nextCursor=page[-1].entry_id if len(letters) > len(page) else None))


async def manage_sink_dead_letters(request: web.Request) -> web.Response:
    body = validated(SinkDeadLetterRequest, await read_json(request))
    asked = {"ids": len(body.ids) if body.ids is not None else "all"}
    if body.action == "replay":
        replayed = await _admin(request).replay(body.ids)
        await audit(request, "replay", TARGET, asked, {"replayed": len(replayed)})
        return respond(SinkReplayResult(action="replay", replayed=replayed))
    purged = await _admin(request).purge(body.ids)
    await audit(request, "purge", TARGET, asked, {"purged": purged})
    return respond(SinkPurgeResult(action="purge", purged=purged))
