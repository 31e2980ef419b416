"""Adds jobs to queues: one script call per job, or per chunk of a batch.

The priority lane comes from the `priority` argument, else from the job data's
`priority` field (the seed's convention), else `normal`. On a fast-path queue (no job
records) a job is one plain XADD of the wire format, and its id names its entry.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import orjson
from redis.asyncio import Redis

from config import Settings
from streams.errors import InvalidJob, UnknownQueue
from streams.job import new_job_id
from streams.keys import Lane, idempotency_digest
from streams.scripts import QueueScripts, Scripts

BATCH_CHUNK = 500


@dataclass(frozen=True, slots=True)
class JobSpec:
    """One job to add. `idempotency_key`: the same key within the configured window
    returns the first job's id and adds nothing."""

    data: Any
    name: str | None = None
    priority: str | None = None
    delay: float = 0.0
    idempotency_key: str | None = None


@dataclass(frozen=True, slots=True)
class AddedJob:
    id: str
    queue: str
    created: bool  # False when an idempotency key named an existing job


def lane_of(spec: JobSpec) -> Lane:
    """The lane a job goes to: its priority, else `data.priority`, else normal."""
    priority = spec.priority
    if priority is None and isinstance(spec.data, Mapping):
        priority = spec.data.get("priority")
    try:
        return Lane(priority or Lane.NORMAL)
    except ValueError:
        raise InvalidJob(f"priority: must be one of high, normal, low, not {priority!r}") from None


def encode_data(spec: JobSpec) -> str:
    """The job's data as the compact JSON that records and wire-format entries carry."""
    try:
        return orjson.dumps(spec.data).decode()
    except TypeError as exc:
        raise InvalidJob(f"data: not JSON-serialisable ({exc})") from None


class Producer:
    def __init__(self, redis: Redis, settings: Settings) -> None:
        self.settings = settings
        self._scripts = Scripts(redis)
        self._queues: dict[str, QueueScripts] = {}

    def _queue(self, queue: str) -> QueueScripts:
        if queue not in self.settings.queues:
            raise UnknownQueue(queue)
        if queue not in self._queues:
            self._queues[queue] = QueueScripts(self._scripts, self.settings, queue)
        return self._queues[queue]

    async def add(self, queue: str, data: Any, *, name: str | None = None,
                  priority: str | None = None, delay: float = 0.0,
                  idempotency_key: str | None = None) -> AddedJob:
        spec = JobSpec(data, name, priority, delay, idempotency_key)
        return (await self.add_many(queue, [spec]))[0]

    async def add_many(self, queue: str, specs: Iterable[JobSpec]) -> list[AddedJob]:
        """Adds every job, one round trip per chunk of 500. All are validated first, so
        invalid input adds nothing."""
        scripts = self._queue(queue)
        specs = list(specs)
        if not self.settings.policy(queue).records:
            return await self._add_entries(scripts, specs)
        rows = [self._row(queue, spec) for spec in specs]
        added: list[AddedJob] = []
        for start in range(0, len(rows), BATCH_CHUNK):
            for job_id, created in await scripts.add(rows[start:start + BATCH_CHUNK]):
                added.append(AddedJob(job_id, queue, created))
        return added

    @staticmethod
    async def _add_entries(scripts: QueueScripts, specs: list[JobSpec]) -> list[AddedJob]:
        if any(spec.delay for spec in specs):
            raise InvalidJob(f"delay: not supported on {scripts.queue}, a queue without job records")
        if any(spec.idempotency_key for spec in specs):
            raise InvalidJob(f"idempotency_key: not supported on {scripts.queue}, a queue without job "
                             "records (its handler deduplicates by the data's own id)")
        entries = [(lane_of(spec), encode_data(spec)) for spec in specs]
        added: list[AddedJob] = []
        for start in range(0, len(entries), BATCH_CHUNK):
            pipe = scripts.scripts.redis.pipeline(transaction=False)
            for lane, data in entries[start:start + BATCH_CHUNK]:
                pipe.xadd(scripts.keys.lane(lane), {"data": data})
            added += [AddedJob(f"{scripts.queue}-{entry_id}", scripts.queue, True) for entry_id in await pipe.execute()]
        return added

    @staticmethod
    def _row(queue: str, spec: JobSpec) -> tuple[str, str, str, Lane, float, str]:
        if spec.delay < 0:
            raise InvalidJob("delay: must not be negative")
        data = encode_data(spec)
        digest = ""
        if spec.idempotency_key is not None:
            if not spec.idempotency_key:
                raise InvalidJob("idempotency_key: must not be empty")
            digest = idempotency_digest(spec.idempotency_key)
        return new_job_id(queue), spec.name or queue, data, lane_of(spec), spec.delay, digest
