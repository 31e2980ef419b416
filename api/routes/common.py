"""What every handler needs: the path's queue name and job id, checked against the
configured queues and the job id format before any key is built; the audit record of
a management action; the clock.
"""

from __future__ import annotations

import time
from typing import Any

from aiohttp import web

from api.errors import NotFound
from api.messages import invalid_field
from api.state import AUDIT, PRINCIPAL, REQUEST_ID, SETTINGS
from streams.keys import queue_of_job


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def queue_name(request: web.Request) -> str:
    name = request.match_info["queueName"]
    queues = request.app[SETTINGS].queues
    if name not in queues:
        raise NotFound(f"unknown queue {name!r}; the queues are: {', '.join(queues)}")
    return name


def job_id(request: web.Request) -> str:
    """The path's job id when it names a configured queue (a job id starts with it)."""
    value = request.match_info["jobId"]
    if queue_of_job(value) not in request.app[SETTINGS].queues:
        raise NotFound(f"job {value!r} not found")
    return value


def job_ids_of(queue: str, ids: list[str], field: str, location: Any = "body") -> list[str]:
    """`ids` when every one is a job id of `queue`; else a 422 naming the first that is not."""
    for i, value in enumerate(ids):
        if queue_of_job(value) != queue:
            raise invalid_field(location, [field, i], f"{value!r} is not a job id of queue {queue}")
    return ids


async def audit(request: web.Request, action: str, target: str, params: dict[str, Any],
                effect: dict[str, Any]) -> None:
    principal = request[PRINCIPAL]
    await request.app[AUDIT].record(who=principal.name, role=str(principal.role), action=action, target=target,
                                    params=params, effect=effect, request_id=request[REQUEST_ID])
