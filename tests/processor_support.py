"""Helpers for the processor tests: a job context for calling a handler directly,
a burst run of a queue's worker, signals built in one line, and job lookups."""

from __future__ import annotations

import asyncio
import itertools
from typing import Any

from redis.asyncio import Redis

from config import Settings
from processors.models import SignalData
from streams import Handler, Job, JobContext, QueueAdmin, QueueWorker
from streams.job import new_job_id
from streams.keys import QueueKeys

DRAIN_TIMEOUT_S = 20.0
_ids = itertools.count(1)


def make_ctx(redis: Redis, settings: Settings, queue: str, data: Any, job_id: str | None = None,
             attempt: int = 1) -> JobContext:
    """A context as the worker builds it, for calling a handler without a queue."""
    return JobContext(job_id or new_job_id(queue), queue, data, attempt, 0, redis,
                      QueueKeys(settings.key_prefix, queue), settings.events_max_len)


async def drain(settings: Settings, queue: str, handler: Handler, *, redis: Redis | None = None) -> None:
    """Runs one worker on `queue` until nothing is waiting, running or due for retry."""
    await asyncio.wait_for(QueueWorker(settings, queue, handler, redis=redis).run(burst=True), DRAIN_TIMEOUT_S)


def signal(company: str, signal_type: str, signal_id: str | None = None, **data: Any) -> SignalData:
    return SignalData(signalId=signal_id or f"sig_{next(_ids)}", signalType=signal_type, companyId=company,
                      data=data)


async def jobs(redis: Redis, settings: Settings, queue: str) -> list[Job]:
    """Every job of `queue` in any state, oldest first."""
    page = await QueueAdmin(redis, settings).job_page(queue, None, limit=1000)
    return sorted(page.jobs, key=lambda job: job.id)
