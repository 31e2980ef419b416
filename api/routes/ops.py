"""What operators read: liveness and readiness, the figures of every stream, consumer
group and consumer, the audit trail, and the OpenAPI document.
"""

from __future__ import annotations

from aiohttp import web

from api.auth import bearer_principal
from api.errors import redis_unavailable, unavailable_reason
from api.messages import query, respond
from api.routes.common import now_ms
from api.ops_schemas import (AuditEntryView, AuditPage, Health, QueueStreams, Readiness, StreamsOverview,
                             WorkersOverview, WorkerView)
from api.schemas import PageQuery
from api.sink_schemas import SinkView
from api.state import ADMIN, AUDIT, OPENAPI, REDIS, SETTINGS
from processors.outbox_admin import OutboxAdmin
from streams.registry import WorkerRegistry

ANONYMOUS_HIDDEN = {"redis", "scripts"}  # /readyz details, for a caller with a token


async def healthz(request: web.Request) -> web.Response:
    """The process answers; Redis is not asked."""
    return respond(Health(status="ok"))


async def readyz(request: web.Request) -> web.Response:
    """Redis answers and holds every script; scripts it lost (a restart, a failover)
    are loaded again here, so a ready answer means the next job can be added. Anyone
    gets the status and a reason word; the details (which say how Redis is reached)
    need a valid token of any role."""
    admin = request.app[ADMIN]
    detailed = bearer_principal(request) is not None
    try:
        await request.app[REDIS].ping()
        if not await admin.scripts_loaded():
            await admin.load_scripts()
    except Exception as exc:
        if not redis_unavailable(exc):
            raise
        answer = Readiness(status="unavailable", reason=unavailable_reason(exc), redis=f"{type(exc).__name__}: {exc}",
                           scripts=False)
        return respond(answer, 503, exclude=None if detailed else ANONYMOUS_HIDDEN)
    return respond(Readiness(status="ready", redis="ok", scripts=True),
                   exclude={"reason"} if detailed else ANONYMOUS_HIDDEN | {"reason"})


async def streams_overview(request: web.Request) -> web.Response:
    admin = request.app[ADMIN]
    statuses = await admin.all_status()
    sink = await OutboxAdmin(request.app[REDIS], request.app[SETTINGS]).figures()
    return respond(StreamsOverview(
        queues={s.queue: QueueStreams.of(s) for s in statuses}, sink=SinkView.of(sink), timestamp=now_ms()))


async def live_workers(request: web.Request) -> web.Response:
    """The worker processes whose registry entry has not expired."""
    workers = await WorkerRegistry(request.app[REDIS], request.app[SETTINGS]).live()
    return respond(WorkersOverview(workers=[WorkerView(**w.as_dict()) for w in workers], timestamp=now_ms()))


async def audit_trail(request: web.Request) -> web.Response:
    params = query(request, PageQuery)
    entries, next_cursor = await request.app[AUDIT].page(params.cursor, params.limit)
    return respond(AuditPage(entries=[AuditEntryView(id=e.id, at=e.at_ms, who=e.who, role=e.role, action=e.action,
                                                     target=e.target, params=e.params, effect=e.effect,
                                                     requestId=e.request_id) for e in entries],
                             nextCursor=next_cursor))


async def openapi_document(request: web.Request) -> web.Response:
    return web.json_response(request.app[OPENAPI])
