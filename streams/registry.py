"""The worker registry: each worker process keeps a hash (host, pid, queues, start
time, in-flight jobs per queue) that expires `worker_ttl` after its last heartbeat, so
a process that dies, even by SIGKILL, drops out by itself; one that stops cleanly
removes its entry at once.

`WorkerRegistry.live()` lists the entries that have not expired (the API's
`GET /api/workers`, `tgjobs health`); `Heartbeat` is what run_workers runs beside
its queue workers.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import orjson
from redis.asyncio import Redis

from config import Settings
from streams.keys import WorkerKeys
from streams.outage import Outage, is_transient

log = logging.getLogger(__name__)
LEAVE_TIMEOUT_S = 2.0


def now_ms() -> int:
    return time.time_ns() // 1_000_000


@dataclass(slots=True)
class WorkerInfo:
    """One worker process as registered. Times are ms since the epoch (the worker's clock)."""

    id: str
    host: str
    pid: int
    queues: list[str]
    started_at: int
    heartbeat_at: int
    in_flight: dict[str, int] = field(default_factory=dict)

    @property
    def total_in_flight(self) -> int:
        return sum(self.in_flight.values())

    def to_record(self) -> dict[str, str]:
        return {"id": self.id, "host": self.host, "pid": str(self.pid),
                "queues": orjson.dumps(self.queues).decode(), "startedAt": str(self.started_at),
                "heartbeatAt": str(self.heartbeat_at), "inFlight": orjson.dumps(self.in_flight).decode()}

    @classmethod
    def from_record(cls, record: dict[str, str]) -> WorkerInfo:
        return cls(id=record["id"], host=record.get("host", ""), pid=int(record.get("pid") or 0),
                   queues=orjson.loads(record.get("queues") or "[]"),
                   started_at=int(record.get("startedAt") or 0), heartbeat_at=int(record.get("heartbeatAt") or 0),
                   in_flight=orjson.loads(record.get("inFlight") or "{}"))

    def as_dict(self) -> dict[str, object]:
        """The JSON shape the CLI prints."""
        return {"id": self.id, "host": self.host, "pid": self.pid, "queues": self.queues,
                "startedAt": self.started_at, "heartbeatAt": self.heartbeat_at, "inFlight": self.in_flight}


class WorkerRegistry:
    def __init__(self, redis: Redis, settings: Settings) -> None:
        self.redis = redis
        self.settings = settings
        self.keys = WorkerKeys(settings.key_prefix)

    async def beat(self, info: WorkerInfo) -> None:
        """Writes (or refreshes) a worker's entry and its expiry, in one transaction."""
        key = self.keys.worker(info.id)
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.hset(key, mapping=info.to_record())
            pipe.pexpire(key, int(self.settings.worker_ttl * 1000))
            pipe.sadd(self.keys.roster, info.id)
            await pipe.execute()

    async def leave(self, worker_id: str) -> None:
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.delete(self.keys.worker(worker_id)).srem(self.keys.roster, worker_id)
            await pipe.execute()

    async def live(self) -> list[WorkerInfo]:
        """The entries that have not expired, by host then pid; ids whose entry expired
        are dropped from the roster on the way."""
        ids = sorted(await self.redis.smembers(self.keys.roster))
        if not ids:
            return []
        async with self.redis.pipeline(transaction=False) as pipe:
            for worker_id in ids:
                pipe.hgetall(self.keys.worker(worker_id))
            records = await pipe.execute()
        gone = [worker_id for worker_id, record in zip(ids, records) if not record]
        if gone:
            await self.redis.srem(self.keys.roster, *gone)
        workers = [WorkerInfo.from_record(r) for r in records if r]
        return sorted(workers, key=lambda w: (w.host, w.pid, w.id))


class Heartbeat:
    """Registers one worker process and refreshes its entry every `worker_heartbeat`
    until stopped, then removes it. Redis going away is logged once and ridden out."""

    def __init__(self, redis: Redis, settings: Settings, worker_id: str, queues: Sequence[str],
                 in_flight: Callable[[], dict[str, int]]) -> None:
        self.registry = WorkerRegistry(redis, settings)
        self.settings = settings
        self.info = WorkerInfo(id=worker_id, host=socket.gethostname(), pid=os.getpid(), queues=list(queues),
                               started_at=now_ms(), heartbeat_at=now_ms())
        self._in_flight = in_flight
        self._stopping = asyncio.Event()
        self._outage = Outage(log, "worker heartbeat")

    def stop(self) -> None:
        self._stopping.set()

    async def run(self) -> None:
        try:
            while not self._stopping.is_set():
                wait = self.settings.worker_heartbeat
                try:
                    self.info.heartbeat_at = now_ms()
                    self.info.in_flight = self._in_flight()
                    await self.registry.beat(self.info)
                    self._outage.succeeded()
                except Exception as exc:
                    if is_transient(exc):
                        wait = min(wait, self._outage.failed(exc))
                    else:  # never let the registry stop the workers; say so, and try again
                        log.exception("worker heartbeat failed; retrying in %.0fs", wait)
                try:
                    await asyncio.wait_for(self._stopping.wait(), wait)
                except TimeoutError:
                    pass
        finally:
            try:
                await asyncio.wait_for(self.registry.leave(self.info.id), LEAVE_TIMEOUT_S)
            except Exception as exc:  # the entry expires by itself
                log.debug("could not remove the registry entry of %s: %s", self.info.id, exc)
