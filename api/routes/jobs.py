"""/api/jobs: create a job, the counts of every queue, one job, remove or retry one.

Creating a job costs one Redis round trip: the data is validated by its kind's model
(processors.kinds), a signal by the app's signal intake too, and the producer's one
script does the rest.
"""

from __future__ import annotations

import re

from aiohttp import web

from api.errors import BadRequest, Invalid, NotFound
from api.messages import body_details, invalid_field, query, read_json, respond, validated
from api.routes.common import audit, job_id, now_ms
from api.scope import require_scope
from api.schemas import (JOB_ACTIONS, JOB_REQUESTS, JobActionQuery, JobActionResult, JobCreated, JobDetailView,
                         JobEnvelope, JobsOverview)
from api.state import ADMIN, PRODUCER, SIGNAL_INTAKE
from processors.intake import InvalidSignal
from processors.kinds import KINDS, SIGNALS
from streams.listing import reported_state
from streams.job import JobState

IDEMPOTENCY_HEADER = "Idempotency-Key"
_IDEMPOTENCY_KEY = re.compile(r"^[\x21-\x7e]{1,255}$")
LOG_LINES_SHOWN = 1000


async def create_job(request: web.Request) -> web.Response:
    raw = await read_json(request)
    job_type = validated(JobEnvelope, raw).type
    kind = KINDS.by_type.get(job_type)
    if kind is None:
        raise NotFound(f"unknown job type {job_type!r}; the types are: {', '.join(KINDS.types)}")
    data = validated(JOB_REQUESTS[job_type], raw).data  # type: ignore[attr-defined]
    await require_scope(request, company=getattr(data, "companyId", None), email_to=getattr(data, "emailTo", None))
    if kind is SIGNALS:
        try:
            request.app[SIGNAL_INTAKE].validate(data)
        except InvalidSignal as exc:
            raise Invalid(f"invalid signal: {exc}", body_details(exc.problems, ["data"])) from None
    queue = kind.queue
    created_at = now_ms()
    added = await request.app[PRODUCER].add(queue, data.model_dump(mode="json", exclude_unset=True),
                                            name=kind.name, idempotency_key=_idempotency_key(request))
    if added.created:
        return respond(JobCreated(id=added.id, queue=queue, status=JobState.WAITING, createdAt=created_at), 201)
    # The key named a job added before: answer with that job, as it is now.
    detail = await request.app[ADMIN].job_detail(added.id, log_limit=1)
    job = detail.job
    return respond(JobCreated(id=job.id, queue=queue, status=reported_state(job, detail.paused),
                              createdAt=job.createdAt or created_at))


def _idempotency_key(request: web.Request) -> str | None:
    key = request.headers.get(IDEMPOTENCY_HEADER)
    if key is not None and not _IDEMPOTENCY_KEY.match(key):
        raise invalid_field("header", [IDEMPOTENCY_HEADER], "1 to 255 visible ASCII characters")
    return key


async def jobs_overview(request: web.Request) -> web.Response:
    statuses = await request.app[ADMIN].all_status()
    return respond(JobsOverview.of(statuses, now_ms()))


async def get_job(request: web.Request) -> web.Response:
    detail = await request.app[ADMIN].job_detail(job_id(request), log_limit=LOG_LINES_SHOWN)
    status = reported_state(detail.job, detail.paused)
    return respond(JobDetailView.of_detail(detail.job, status, detail.logs))


async def delete_job(request: web.Request) -> web.Response:
    action = request.query.get("action", "remove")
    if action not in JOB_ACTIONS:
        raise BadRequest(f"unknown action {action!r}; use one of: {', '.join(JOB_ACTIONS)}")
    query(request, JobActionQuery)
    target, admin = job_id(request), request.app[ADMIN]
    if action == "remove":
        await admin.remove(target)
        result = JobActionResult(id=target, action="remove", status="removed")
    else:  # a stream-kept job runs again under a new id: its new entry's
        result = JobActionResult(id=await admin.retry(target), action="retry", status="waiting")
    await audit(request, action, target, {}, {"status": result.status})
    return respond(result)

