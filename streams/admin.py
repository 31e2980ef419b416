"""Queue control and inspection: counts, stream figures, pause/resume, one job's
record and logs, remove, retry, clean, and the dead-letter stream.

Used by the CLI and the API. Every queue name is checked against the policy table
and every job id against its format before a key is built from it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

import orjson
from redis.asyncio import Redis

from config import Settings
from streams.errors import JobNotFound, JobStateConflict, UnknownQueue
from streams.job import Job, JobState
from streams.keys import GROUP, LANES, QueueKeys, queue_of_job
from streams.scripts import QueueScripts, Scripts

FinishedState = Literal["completed", "failed"]


@dataclass(slots=True)
class ConsumerInfo:
    name: str
    pending: int
    idle_ms: int


@dataclass(slots=True)
class LaneInfo:
    lane: str
    length: int
    lag: int | None  # None when Redis cannot tell (entries deleted after the group's position)
    pending: int
    oldest_pending_ms: int | None
    last_delivered_id: str | None
    consumers: list[ConsumerInfo] = field(default_factory=list)


@dataclass(slots=True)
class QueueStatus:
    queue: str
    paused: bool
    counts: dict[str, int]
    lanes: list[LaneInfo]
    dead: int

    @property
    def length(self) -> int:
        return sum(lane.length for lane in self.lanes)

    @property
    def lag(self) -> int | None:
        lags = [lane.lag for lane in self.lanes]
        return None if None in lags else sum(lag for lag in lags if lag is not None)

    @property
    def pending(self) -> int:
        return sum(lane.pending for lane in self.lanes)


@dataclass(slots=True)
class DeadLetter:
    entry_id: str
    job_id: str
    name: str
    data: Any
    error: str
    error_type: str
    attempts: int
    stalls: int
    created_at: int | None
    failed_at: int

    @classmethod
    def from_entry(cls, entry_id: str, f: dict[str, str]) -> DeadLetter:
        return cls(entry_id, f.get("job", ""), f.get("name", ""), orjson.loads(f.get("data") or "null"),
                   f.get("error", ""), f.get("errorType", ""), int(f.get("attempts") or 0),
                   int(f.get("stalls") or 0), int(f["createdAt"]) if f.get("createdAt") else None,
                   int(f.get("failedAt") or 0))


class QueueAdmin:
    def __init__(self, redis: Redis, settings: Settings) -> None:
        self.redis = redis
        self.settings = settings
        self._scripts = Scripts(redis)

    def scripts(self, queue: str) -> QueueScripts:
        if queue not in self.settings.queues:
            raise UnknownQueue(queue)
        return QueueScripts(self._scripts, self.settings, queue)

    def keys(self, queue: str) -> QueueKeys:
        return self.scripts(queue).keys

    def _job_keys(self, job_id: str) -> QueueKeys:
        queue = queue_of_job(job_id)
        if queue is None or queue not in self.settings.queues:
            raise JobNotFound(job_id)
        return self.keys(queue)

    # -- figures ------------------------------------------------------------------

    async def status(self, queue: str) -> QueueStatus:
        k = self.keys(queue)
        async with self.redis.pipeline(transaction=False) as pipe:
            for state in ("waiting", "active", "retrying", "completed", "failed"):
                pipe.zcard(k.state_index(state))
            pipe.zcard(k.scheduled)
            pipe.hget(k.meta, "paused")
            pipe.xlen(k.dead)
            waiting, active, retrying, completed, failed, scheduled, paused, dead = await pipe.execute()
        is_paused = paused == "1"
        counts = {"waiting": 0 if is_paused else waiting, "active": active,
                  "delayed": retrying + scheduled, "completed": completed, "failed": failed,
                  "paused": waiting if is_paused else 0}
        lanes = [await self._lane_info(k, lane) for lane in LANES]
        return QueueStatus(queue, is_paused, counts, lanes, dead)

    async def _lane_info(self, k: QueueKeys, lane: str) -> LaneInfo:
        key = k.lane(lane)
        if not await self.redis.exists(key):
            return LaneInfo(lane, 0, 0, 0, None, None)
        length = await self.redis.xlen(key)
        group = next((g for g in await self.redis.xinfo_groups(key) if g["name"] == GROUP), None)
        if group is None:
            return LaneInfo(lane, length, length, 0, None, None)
        consumers = [ConsumerInfo(c["name"], int(c["pending"]), int(c["idle"]))
                     for c in await self.redis.xinfo_consumers(key, GROUP)]
        oldest = None
        if group["pending"]:
            first = await self.redis.xpending_range(key, GROUP, "-", "+", 1)
            oldest = int(first[0]["time_since_delivered"]) if first else None
        lag = group.get("lag")
        return LaneInfo(lane, length, None if lag is None else int(lag), int(group["pending"]), oldest,
                        group["last-delivered-id"], consumers)

    async def all_status(self) -> list[QueueStatus]:
        return [await self.status(queue) for queue in self.settings.queues]

    # -- pause ------------------------------------------------------------------

    async def pause(self, queue: str) -> None:
        await self._set_paused(queue, True)

    async def resume(self, queue: str) -> None:
        await self._set_paused(queue, False)

    async def _set_paused(self, queue: str, paused: bool) -> None:
        k = self.keys(queue)
        async with self.redis.pipeline(transaction=True) as pipe:
            if paused:
                pipe.hset(k.meta, "paused", "1")
            else:
                pipe.hdel(k.meta, "paused")
            pipe.xadd(k.events, {"event": "paused" if paused else "resumed", "job": ""},
                      maxlen=self.settings.events_max_len, approximate=True)
            await pipe.execute()

    # -- jobs -----------------------------------------------------------------------

    async def job(self, job_id: str) -> Job:
        record = await self.redis.hgetall(self._job_keys(job_id).job(job_id))
        if not record:
            raise JobNotFound(job_id)
        return Job.from_record(record)

    async def job_logs(self, job_id: str, limit: int = 1000) -> list[str]:
        """The newest `limit` log lines of a job, oldest first."""
        if limit <= 0:
            return []
        return await self.redis.lrange(self._job_keys(job_id).logs(job_id), -limit, -1)

    async def remove(self, job_id: str) -> None:
        k = self._job_keys(job_id)
        outcome = await self.scripts(k.queue).remove(job_id)
        if outcome == 0:
            raise JobNotFound(job_id)
        if outcome == -1:
            raise JobStateConflict(f"job {job_id} is active: it can be removed once it finishes")

    async def retry(self, job_id: str) -> None:
        k = self._job_keys(job_id)
        outcome = await self.scripts(k.queue).retry(job_id)
        if outcome == 0:
            raise JobNotFound(job_id)
        if outcome == -1:
            state = (await self.job(job_id)).state
            raise JobStateConflict(f"job {job_id} is {state}: only failed jobs can be retried")

    async def clean(self, queue: str, grace: float, limit: int,
                    state: FinishedState = "completed") -> list[str]:
        """Deletes up to `limit` records of `state` that finished more than `grace` s ago."""
        return await self.scripts(queue).clean(state, grace, limit)

    async def jobs(self, queue: str, state: JobState, offset: int = 0, limit: int = 100) -> list[Job]:
        """Jobs in one state: delayed ones by due time, the others newest first."""
        k = self.keys(queue)
        if state is JobState.DELAYED:
            ids = await self.redis.zrange(k.scheduled, 0, -1) + await self.redis.zrange(k.state_index("retrying"), 0, -1)
            ids = ids[offset:offset + limit]
        elif state is JobState.PAUSED and await self.redis.hget(k.meta, "paused") != "1":
            ids = []
        else:
            index = "waiting" if state is JobState.PAUSED else state.value
            ids = await self.redis.zrevrange(k.state_index(index), offset, offset + limit - 1)
        async with self.redis.pipeline(transaction=False) as pipe:
            for job_id in ids:
                pipe.hgetall(k.job(job_id))
            records = await pipe.execute()
        return [Job.from_record(r) for r in records if r]

    # -- dead letters -----------------------------------------------------------------

    async def dead_letters(self, queue: str, after: str = "-", limit: int = 100) -> list[DeadLetter]:
        """Oldest first; pass the last entry id seen as `after` for the next page."""
        start = after if after == "-" else f"({after}"
        entries = await self.redis.xrange(self.keys(queue).dead, start, "+", count=limit)
        return [DeadLetter.from_entry(entry_id, fields) for entry_id, fields in entries]

    async def _select_dead(self, queue: str, job_ids: list[str] | None) -> list[DeadLetter]:
        letters, after = [], "-"
        while page := await self.dead_letters(queue, after, 500):
            letters += [d for d in page if job_ids is None or d.job_id in job_ids]
            after = page[-1].entry_id
        return letters

    async def replay(self, queue: str, job_ids: list[str] | None = None) -> list[str]:
        """Runs dead-lettered jobs again with fresh attempts and deletes their letters;
        returns the job ids queued. A letter already replayed is skipped."""
        scripts = self.scripts(queue)
        queued = []
        for letter in await self._select_dead(queue, job_ids):
            if await scripts.retry(letter.job_id, letter.entry_id) == 1:
                queued.append(letter.job_id)
        return queued

    async def purge(self, queue: str, job_ids: list[str] | None = None) -> int:
        """Deletes dead letters (all, or those of `job_ids`); returns how many."""
        k = self.keys(queue)
        if job_ids is None:
            async with self.redis.pipeline(transaction=True) as pipe:
                count, _ = await pipe.xlen(k.dead).delete(k.dead).execute()
            return count
        ids = [d.entry_id for d in await self._select_dead(queue, job_ids)]
        return await self.redis.xdel(k.dead, *ids) if ids else 0
