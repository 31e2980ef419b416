"""Response models of the dead-letter and operations endpoints: dead letters, streams
and consumer groups, live workers, the audit trail, health and readiness (see
api.schemas for the shared bases).
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from api.schemas import Response, Timestamp
from api.sink_schemas import SinkView
from streams.figures import QueueStatus
from streams.listing import DeadLetter


class DeadLetterView(Response):
    entryId: str
    jobId: str
    name: str
    data: Any
    error: str
    errorType: str
    attempts: int
    stalls: int
    createdAt: Timestamp | None
    failedAt: Timestamp

    @classmethod
    def of(cls, d: DeadLetter) -> DeadLetterView:
        return cls(entryId=d.entry_id, jobId=d.job_id, name=d.name, data=d.data, error=d.error,
                   errorType=d.error_type, attempts=d.attempts, stalls=d.stalls, createdAt=d.created_at,
                   failedAt=d.failed_at)


class DeadLetterPage(Response):
    queue: str
    items: list[DeadLetterView]
    nextCursor: str | None


class ReplayResult(Response):
    queue: str
    action: Literal["replay"]
    replayed: list[str] = Field(description="job ids queued again with fresh attempts")


class PurgeResult(Response):
    queue: str
    action: Literal["purge"]
    purged: int


class ConsumerView(Response):
    name: str
    pending: int
    idleMs: int


class GroupView(Response):
    name: str
    lag: int | None
    pending: int
    oldestPendingMs: int | None = Field(description="age of the oldest entry delivered and not acknowledged")
    lastDeliveredId: str
    consumers: list[ConsumerView]


class StreamView(Response):
    lane: str
    partition: int = Field(description="0 unless the queue is split into partitions (QUEUES__Q__PARTITIONS)")
    key: str
    length: int
    groups: list[GroupView]


class DeadStreamView(Response):
    partition: int
    key: str
    length: int


class QueueStreams(Response):
    streams: list[StreamView]
    dead: list[DeadStreamView] = Field(description="the dead-letter stream of each partition (one for most queues)")

    @classmethod
    def of(cls, status: QueueStatus) -> QueueStreams:
        return cls(streams=[StreamView(lane=lane.lane, partition=lane.partition, key=lane.key, length=lane.length,
                                       groups=[
            GroupView(name=g.name, lag=g.lag, pending=g.pending, oldestPendingMs=g.oldest_pending_ms,
                      lastDeliveredId=g.last_delivered_id,
                      consumers=[ConsumerView(name=c.name, pending=c.pending, idleMs=c.idle_ms) for c in g.consumers])
            for g in lane.groups]) for lane in status.lanes],
            dead=[DeadStreamView(partition=d.partition, key=d.key, length=d.length) for d in status.dead_streams])


class StreamsOverview(Response):
    queues: dict[str, QueueStreams]
    sink: SinkView = Field(description="the PostgreSQL outbox: lag, dead letters, rows written")
    timestamp: Timestamp


class WorkerView(Response):
    id: str = Field(description="the process's consumer name in every group: <host>-<pid>-<random>")
    host: str
    pid: int
    queues: list[str]
    startedAt: Timestamp
    heartbeatAt: Timestamp = Field(description="the last heartbeat (the worker's clock)")
    inFlight: dict[str, int] = Field(description="jobs running now, per queue")


class WorkersOverview(Response):
    workers: list[WorkerView] = Field(description="worker processes whose heartbeat has not expired")
    timestamp: Timestamp


class AuditEntryView(Response):
    id: str
    at: Timestamp
    who: str
    role: str
    action: str
    target: str
    params: dict[str, Any]
    effect: dict[str, Any]
    requestId: str


class AuditPage(Response):
    entries: list[AuditEntryView]
    nextCursor: str | None


class Health(Response):
    status: Literal["ok"]


class Readiness(Response):
    status: Literal["ready", "unavailable"]
    reason: str | None = Field(None, description="when unavailable, one word: redis_unreachable, redis_loading, "
                                                 "redis_read_only, redis_out_of_memory")
    redis: str | None = Field(None, description="with a valid token only: 'ok', or the error Redis gave")
    scripts: bool | None = Field(None, description="with a valid token only: Redis holds every server-side script")
