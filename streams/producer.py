"""Adds jobs to queues: one script call per job, or per chunk of a batch.

The priority lane comes from the `priority` argument, else from the job data's
`priority` field (the seed's convention), else `normal`. On a fast-path queue (no job
records) a job is one plain XADD of the wire format, and its id names its entry; on a
partitioned one the data's `partition_by` field picks the partition (`EntryRouter`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import orjson
from redis.asyncio import Redis

from config import Settings
from streams import tracing
from streams.errors import EntryTooLarge, InvalidJob, UnknownQueue
from streams.job import new_job_id
from streams.keeping import keeps_records
from streams.keys import Lane, QueueKeys, idempotency_digest, partition_keys, partition_of
from streams.replication import ReplicaWait
from streams.scripts import QueueScripts, Scripts
from streams.tracing import TRACEPARENT

BATCH_CHUNK = 500
DATA_FIELD = "data"  # the one field of a wire-format entry


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


def encode_data(spec: JobSpec, max_bytes: int) -> str:
    """The job's data as the compact JSON that records and wire-format entries carry;
    EntryTooLarge past `max_bytes` (MAX_ENTRY_BYTES, which the worker enforces too)."""
    try:
        data = orjson.dumps(spec.data)
    except TypeError as exc:
        raise InvalidJob(f"data: not JSON-serialisable ({exc})") from None
    if len(data) > max_bytes:
        raise EntryTooLarge(len(data), max_bytes)
    return data.decode()


class EntryRouter:
    """The stream a fast-path entry goes to: its partition's lane. With one partition
    every entry goes to the queue's own lanes; with several, the value of the data's
    `partition_by` field (a string or an integer) picks one, so entries that share it
    stay in order."""

    def __init__(self, settings: Settings, queue: str) -> None:
        policy = settings.policy(queue)
        self.partitions: tuple[QueueKeys, ...] = partition_keys(settings.key_prefix, queue, policy.partitions)
        self.partition_by = policy.partition_by or ""
        self._job_prefix = {k.lane(lane): k.entry_job_prefix for k in self.partitions for lane in Lane}

    def stream(self, spec: JobSpec) -> str:
        return self.partitions[self.partition(spec.data)].lane(lane_of(spec))

    def job_id(self, stream: str, entry_id: str) -> str:
        """The job id of the entry `entry_id` written to `stream` (one `stream()` gave)."""
        return self._job_prefix[stream] + entry_id

    def partition(self, data: Any) -> int:
        count = len(self.partitions)
        if count == 1:
            return 0
        value = data.get(self.partition_by) if isinstance(data, Mapping) else None
        if isinstance(value, bool) or not isinstance(value, (str, int)):
            raise InvalidJob(f"data.{self.partition_by}: a string or an integer is required; it picks "
                             f"which of the queue's {count} partitions the entry goes to")
        return partition_of(str(value), count)


def entry_fields(data: str, traceparent: str = "") -> dict[str, str]:
    """A wire-format entry's fields: `data`, and the optional `traceparent`."""
    return {DATA_FIELD: data, TRACEPARENT: traceparent} if traceparent else {DATA_FIELD: data}


async def append_entries(wait: ReplicaWait, entries: Sequence[tuple[str, str]],
                         chunk: int = BATCH_CHUNK, traceparent: str = "") -> list[str]:
    """XADDs wire-format entries, (stream key, data JSON) each, one pipeline per
    `chunk` (waited for by `wait`'s replicas); returns their entry ids in order."""
    ids: list[str] = []
    for start in range(0, len(entries), chunk):
        part = entries[start:start + chunk]
        pipe = wait.redis.pipeline(transaction=False)
        for stream, data in part:
            pipe.xadd(stream, entry_fields(data, traceparent))
        ids += await wait.execute(pipe, {stream for stream, _ in part})
    return ids


class Producer:
    def __init__(self, redis: Redis, settings: Settings) -> None:
        self.settings = settings
        self._scripts = Scripts(redis)
        self._queues: dict[str, QueueScripts] = {}
        self._routers: dict[str, EntryRouter] = {}

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
        invalid input adds nothing. With tracing on, one span covers the call and its
        context goes with every job."""
        scripts = self._queue(queue)
        specs = list(specs)
        with tracing.adding(queue, len(specs)) as span:
            if not keeps_records(self.settings.policy(queue)):
                if queue not in self._routers:
                    self._routers[queue] = EntryRouter(self.settings, queue)
                return await self._add_entries(scripts, self._routers[queue], specs, self.settings.max_entry_bytes,
                                               span.traceparent)
            rows = [self._row(queue, spec, self.settings.max_entry_bytes) for spec in specs]
            added: list[AddedJob] = []
            for start in range(0, len(rows), BATCH_CHUNK):
                for job_id, created in await scripts.add(rows[start:start + BATCH_CHUNK], span.traceparent):
                    added.append(AddedJob(job_id, queue, created))
            return added

    @staticmethod
    async def _add_entries(scripts: QueueScripts, router: EntryRouter, specs: list[JobSpec],
                           max_bytes: int, traceparent: str) -> list[AddedJob]:
        if any(spec.delay for spec in specs):
            raise InvalidJob(f"delay: not supported on {scripts.queue}, a queue without job records")
        if any(spec.idempotency_key for spec in specs):
            raise InvalidJob(f"idempotency_key: not supported on {scripts.queue}, a queue without job "
                             "records (its handler deduplicates by the data's own id)")
        entries = [(router.stream(spec), encode_data(spec, max_bytes)) for spec in specs]
        entry_ids = await append_entries(scripts.wait, entries, traceparent=traceparent)
        return [AddedJob(router.job_id(stream, entry_id), scripts.queue, True)
                for (stream, _), entry_id in zip(entries, entry_ids)]

    @staticmethod
    def _row(queue: str, spec: JobSpec, max_bytes: int) -> tuple[str, str, str, Lane, float, str]:
        if spec.delay < 0:
            raise InvalidJob("delay: must not be negative")
        data = encode_data(spec, max_bytes)
        digest = ""
        if spec.idempotency_key is not None:
            if not spec.idempotency_key:
                raise InvalidJob("idempotency_key: must not be empty")
            digest = idempotency_digest(spec.idempotency_key)
        return new_job_id(queue), spec.name or queue, data, lane_of(spec), spec.delay, digest
