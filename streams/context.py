"""What a handler receives: the job's data and identity, and ways to report progress.

The job id is stable across retries and redeliveries; delivery is at-least-once, so
handlers with outside effects use it to make those effects idempotent. The writes made
here are shielded: a handler timed out mid-call never leaves one half-sent.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar, runtime_checkable

import orjson
from redis.asyncio import Redis

from streams.keys import QueueKeys

LOG_LINES_KEPT = 1000
log = logging.getLogger("streams.worker")


@dataclass(slots=True)
class JobContext:
    id: str
    queue: str
    data: Any
    attempt: int  # 1 for the first run; handler failures so far + 1
    stalls: int  # times a worker died while running this job
    _redis: Redis
    _keys: QueueKeys
    _events_max_len: int
    tracked: bool = True  # False on the fast path: no job record, so no progress or log


    async def progress(self, value: int | float | dict[str, Any]) -> None:
        """Records progress (a percentage, or any JSON object) and emits an event."""
        if not self.tracked:
            return
        encoded = orjson.dumps(value).decode()
        log.debug("%s: job %s progress %s", self.queue, self.id, encoded,
                  extra={"queue": self.queue, "job": self.id, "progress": encoded})
        pipe = self._redis.pipeline(transaction=False)
        pipe.hset(self._keys.job(self.id), "progress", encoded)
        pipe.xadd(self._keys.events, {"event": "progress", "job": self.id, "progress": encoded},
                  maxlen=self._events_max_len, approximate=True)
        await asyncio.shield(pipe.execute())

    async def log(self, message: str) -> None:
        """Appends a line to the job's log (the newest lines are kept)."""
        if not self.tracked:
            return
        key = self._keys.logs(self.id)
        pipe = self._redis.pipeline(transaction=False)
        pipe.rpush(key, message)
        pipe.ltrim(key, -LOG_LINES_KEPT, -1)
        await asyncio.shield(pipe.execute())


Handler = Callable[[JobContext], Awaitable[Any]]


@runtime_checkable
class BatchHandler(Protocol):
    """Handles a whole batch read on the fast path: one result per job, in order; an
    exception instance in a job's place fails that job alone."""

    handles_batches: bool

    def __call__(self, jobs: Sequence[JobContext]) -> Awaitable[Sequence[Any]]: ...


F = TypeVar("F", bound=Callable[..., Any])


def batch_handler(fn: F) -> F:
    """Marks `fn(jobs) -> results` as a batch handler for a fast-path queue."""
    fn.handles_batches = True  # type: ignore[attr-defined]
    return fn
