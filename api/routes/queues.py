"""/api/queues/{queueName}: one queue's figures and jobs (paged by cursor), pause,
resume and clean, bulk removal; and its dead letters: list, replay, purge.

Every management action is recorded in the audit trail with its effect.
"""

from __future__ import annotations

from aiohttp import web

from api.messages import chosen_action, invalid_field, query, read_json, respond, validated
from api.routes.common import audit, job_ids_of, queue_name
from api.ops_schemas import DeadLetterPage, DeadLetterView, PurgeResult, ReplayResult
from api.schemas import (DEAD_LETTER_ACTIONS, MAX_IDS, QUEUE_ACTIONS, BulkRemoveQuery, BulkRemoveResult, CleanRequest,
                         CleanResult, DeadLetterRequest, JobView, PageQuery, PauseResult, QueueQuery, QueueView)
from api.state import ADMIN
from streams.listing import first_letters, reported_state
from streams.job import JobState

BULK_REMOVE_MAX = 10_000  # jobs one DELETE by status removes; `more` says when some remain


async def get_queue(request: web.Request) -> web.Response:
    queue, admin = queue_name(request), request.app[ADMIN]
    params = query(request, QueueQuery)
    view = QueueView.of(await admin.status(queue))
    if not params.includeJobs:
        return respond(view, exclude={"jobs", "nextCursor"})
    try:
        page = await admin.job_page(queue, params.status, params.limit, params.cursor)
    except ValueError as exc:
        raise invalid_field("query", ["cursor"], str(exc)) from None
    view.jobs = [JobView.of(job, reported_state(job, page.paused)) for job in page.jobs]
    view.nextCursor = page.next_cursor
    return respond(view)


async def manage_queue(request: web.Request) -> web.Response:
    queue, admin = queue_name(request), request.app[ADMIN]
    raw = await read_json(request)
    action = chosen_action(raw, QUEUE_ACTIONS)
    body = validated(QUEUE_ACTIONS[action], raw)
    if isinstance(body, CleanRequest):
        options = body.options
        removed = await admin.clean(queue, options.grace / 1000, options.limit, options.type)
        await audit(request, "clean", queue, options.model_dump(), {"removed": len(removed)})
        return respond(CleanResult(queue=queue, action="clean", type=options.type, removed=len(removed),
                                   jobIds=removed))
    if action == "pause":
        await admin.pause(queue)
    else:
        await admin.resume(queue)
    await audit(request, action, queue, {}, {"paused": action == "pause"})
    return respond(PauseResult(queue=queue, action=action, paused=action == "pause"))


async def remove_jobs(request: web.Request) -> web.Response:
    queue, admin = queue_name(request), request.app[ADMIN]
    params = query(request, BulkRemoveQuery)
    if (params.jobIds is None) == (params.status is None):
        raise invalid_field("query", [], "give either jobIds (comma-separated) or status, not both")
    more = False
    if params.jobIds is not None:
        ids = [i.strip() for i in params.jobIds.split(",") if i.strip()]
        if not 1 <= len(ids) <= MAX_IDS:
            raise invalid_field("query", ["jobIds"], f"name 1 to {MAX_IDS} job ids")
        ids = job_ids_of(queue, ids, "jobIds", "query")
        asked = {"jobIds": len(ids)}
    else:
        ids = await admin.job_ids(queue, JobState(params.status), BULK_REMOVE_MAX + 1)
        ids, more = ids[:BULK_REMOVE_MAX], len(ids) > BULK_REMOVE_MAX
        asked = {"status": params.status}
    outcomes = await admin.remove_many(queue, ids)
    result = BulkRemoveResult(queue=queue, removed=[i for i, o in outcomes.items() if o == 1],
                              notFound=[i for i, o in outcomes.items() if o == 0],
                              active=[i for i, o in outcomes.items() if o == -1], more=more)
    await audit(request, "remove", queue, asked,
                {"removed": len(result.removed), "notFound": len(result.notFound), "active": len(result.active)})
    return respond(result)


async def dead_letters(request: web.Request) -> web.Response:
    queue = queue_name(request)
    params = query(request, PageQuery)
    letters = await request.app[ADMIN].dead_letters(queue, params.cursor or "-", params.limit + 1)
    page = first_letters(letters, params.limit)
    return respond(DeadLetterPage(queue=queue, items=[DeadLetterView.of(d) for d in page],
                                  nextCursor=page[-1].entry_id if len(letters) > len(page) else None))


async def manage_dead_letters(request: web.Request) -> web.Response:
    queue, admin = queue_name(request), request.app[ADMIN]
    raw = await read_json(request)
    chosen_action(raw, DEAD_LETTER_ACTIONS)
    body = validated(DeadLetterRequest, raw)
    ids = None if body.ids is None else job_ids_of(queue, body.ids, "ids")
    asked = {"ids": len(ids) if ids is not None else "all"}
    if body.action == "replay":
        replayed = await admin.replay(queue, ids)
        await audit(request, "replay", queue, asked, {"replayed": len(replayed)})
        return respond(ReplayResult(queue=queue, action="replay", replayed=replayed))
    purged = await admin.purge(queue, ids)
    await audit(request, "purge", queue, asked, {"purged": purged})
    return respond(PurgeResult(queue=queue, action="purge", purged=purged))
