"""Queue control and inspection: figures (streams.figures), pause/resume, one job
and its logs, job listings paged by cursor, remove, retry, clean (through the queue's
way of keeping jobs, streams.keeping), the dead-letter stream, and the key of the
audit trail of these actions.

Used by the CLI and the API. Every queue name is checked against the policy table
and every job id against its format before a key is built from it. A partitioned
queue's figures are the sums over its partitions; pause, resume, replay and purge act
on every partition.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Literal

from redis.asyncio import Redis

from config import Settings
from streams.errors import JobNotFound, JobStateConflict, UnknownQueue
from streams.job import Job, JobState
from streams.figures import QueueStatus, read_statuses
from streams.keeping import JobKeeping, keeping
from streams.keys import QueueKeys, partition_keys, queue_of_job
from streams.listing import DeadLetter, JobDetail, JobPage, entry_order, first_letters
from streams.replication import ReplicaWait
from streams.scripts import SCRIPT_NAMES, QueueScripts, Scripts

FinishedState = Literal["completed", "failed"]
REMOVE_CONCURRENCY = 16  # script calls in flight at once for a bulk removal


class QueueAdmin:
    def __init__(self, redis: Redis, settings: Settings) -> None:
        self.redis = redis
        self.settings = settings
        self._scripts = Scripts(redis)
        self._wait = ReplicaWait(redis, settings)

    async def load_scripts(self) -> None:
        """Loads the engine's scripts, so a syntax error fails start-up."""
        await self._scripts.load()

    async def scripts_loaded(self) -> bool:
        """False when Redis lost any script (a restart, a failover, SCRIPT FLUSH)."""
        return all(await self.redis.script_exists(*(self._scripts[name].sha for name in SCRIPT_NAMES)))

    def scripts(self, queue: str, partition: int = 0) -> QueueScripts:
        if queue not in self.settings.queues:
            raise UnknownQueue(queue)
        return QueueScripts(self._scripts, self.settings, queue, partition)

    def keys(self, queue: str) -> QueueKeys:
        """The queue's keys; partition 0's on a partitioned queue (see `partitions`)."""
        return self.scripts(queue).keys

    def partitions(self, queue: str) -> tuple[QueueKeys, ...]:
        """The key sets of every partition of the queue (one for most queues)."""
        if queue not in self.settings.queues:
            raise UnknownQueue(queue)
        return partition_keys(self.settings.key_prefix, queue, self.settings.policy(queue).partitions)

    # -- figures ------------------------------------------------------------------

    async def status(self, queue: str) -> QueueStatus:
        return (await self.statuses([queue]))[0]

    async def all_status(self) -> list[QueueStatus]:
        return await self.statuses(list(self.settings.queues))

    async def statuses(self, queues: Sequence[str]) -> list[QueueStatus]:
        """Counts and stream figures of several queues (see streams.figures)."""
        return await read_statuses(self.redis, [self.partitions(queue) for queue in queues],
                                   [self.jobs_of(queue) for queue in queues])

    # -- pause ------------------------------------------------------------------

    async def pause(self, queue: str) -> None:
        await self._set_paused(queue, True)

    async def resume(self, queue: str) -> None:
        await self._set_paused(queue, False)

    async def _set_paused(self, queue: str, paused: bool) -> None:
        for k in self.partitions(queue):  # one pipeline per partition: each is its own slot
            async with self.redis.pipeline(transaction=False) as pipe:
                if paused:
                    pipe.hset(k.meta, "paused", "1")
                else:
                    pipe.hdel(k.meta, "paused")
                pipe.xadd(k.events, {"event": "paused" if paused else "resumed", "job": ""},
                          maxlen=self.settings.events_max_len, approximate=True)
                await self._wait.execute(pipe, [k.meta])

    # -- jobs -----------------------------------------------------------------------

    def jobs_of(self, queue: str) -> JobKeeping:
        """How `queue` keeps its jobs; every job action goes through it."""
        if queue not in self.settings.queues:
            raise UnknownQueue(queue)
        return keeping(self.redis, tuple(self.scripts(queue, p) for p in range(self.settings.policy(queue).partitions)))

    def _jobs_of_job(self, job_id: str) -> JobKeeping:
        queue = queue_of_job(job_id)
        if queue is None or queue not in self.settings.queues:
            raise JobNotFound(job_id)
        return self.jobs_of(queue)

    async def job(self, job_id: str) -> Job:
        return (await self.job_detail(job_id, log_limit=0)).job

    async def job_detail(self, job_id: str, log_limit: int = 1000) -> JobDetail:
        """A job, its newest `log_limit` log lines and its queue's pause flag."""
        return await self._jobs_of_job(job_id).detail(job_id, log_limit)

    async def job_logs(self, job_id: str, limit: int = 1000) -> list[str]:
        """The newest `limit` log lines of a job, oldest first."""
        return (await self.job_detail(job_id, limit)).logs if limit > 0 else []

    async def remove(self, job_id: str) -> None:
        outcome = await self._jobs_of_job(job_id).remove(job_id)
        if outcome == 0:
            raise JobNotFound(job_id)
        if outcome == -1:
            raise JobStateConflict(f"job {job_id} is active: it can be removed once it finishes")

    async def retry(self, job_id: str) -> str:
        """Runs a failed job again; returns the id it runs under (a stream-kept job's
        new entry gives it a new one)."""
        return await self._jobs_of_job(job_id).retry(job_id)

    async def clean(self, queue: str, grace: float, limit: int,
                    state: FinishedState = "completed") -> list[str]:
        """Deletes up to `limit` kept jobs of `state` that finished more than `grace` s ago."""
        return await self.jobs_of(queue).clean(JobState(state), grace, limit)

    async def jobs(self, queue: str, state: JobState, limit: int = 100) -> list[Job]:
        """The first page of jobs in one state (see `job_page`)."""
        return (await self.job_page(queue, state, limit)).jobs

    async def job_page(self, queue: str, state: JobState | None = None, limit: int = 100,
                       cursor: str | None = None) -> JobPage:
        """One page of a queue's jobs in one state, or in every state (waiting, active,
        delayed, completed, failed, in that order). Pass `next_cursor` back as `cursor`
        for the next page; it resumes where this page ended, however many jobs were
        added since. A malformed cursor raises ValueError."""
        jobs = self.jobs_of(queue)
        return await jobs.page(state, limit, cursor, await self._paused(queue))

    async def job_ids(self, queue: str, state: JobState, limit: int) -> list[str]:
        """Up to `limit` ids of jobs in one state, in listing order."""
        jobs = self.jobs_of(queue)
        return await jobs.ids(state, limit, await self._paused(queue))

    async def _paused(self, queue: str) -> bool:
        return await self.redis.hget(self.keys(queue).meta, "paused") == "1"

    async def remove_many(self, queue: str, job_ids: Sequence[str]) -> dict[str, int]:
        """Removes each job as `remove` does; returns each id's outcome: 1 removed, 0 not
        found (ids of other queues included), -1 active."""
        jobs = self.jobs_of(queue)
        outcomes = dict.fromkeys(job_ids, 0)
        mine = [job_id for job_id in outcomes if queue_of_job(job_id) == queue]
        for start in range(0, len(mine), REMOVE_CONCURRENCY):
            chunk = mine[start:start + REMOVE_CONCURRENCY]
            results = await asyncio.gather(*(jobs.remove(job_id) for job_id in chunk))
            outcomes.update(zip(chunk, results))
        return outcomes

    # -- dead letters -----------------------------------------------------------------

    async def dead_letters(self, queue: str, after: str = "-", limit: int = 100) -> list[DeadLetter]:
        """Oldest first (by entry id, across partitions); pass the last entry id seen as
        `after` for the next page. Entry ids can repeat across partitions, so a page
        never ends inside a run of equal ids: it may hold a few more than `limit`."""
        start = after if after == "-" else f"({after}"
        async with self.redis.pipeline(transaction=False) as pipe:
            for k in self.partitions(queue):
                pipe.xrange(k.dead, start, "+", count=limit)
            pages = await pipe.execute()
        letters = [DeadLetter.from_entry(entry_id, fields, partition)
                   for partition, entries in enumerate(pages) for entry_id, fields in entries]
        if len(pages) > 1:
            letters.sort(key=lambda d: entry_order(d.entry_id))
        return first_letters(letters, limit)

    async def _select_dead(self, queue: str, job_ids: list[str] | None) -> list[DeadLetter]:
        wanted = None if job_ids is None else set(job_ids)
        letters = []
        for k in self.partitions(queue):
            after = "-"
            while entries := await self.redis.xrange(k.dead, after, "+", count=500):
                page = [DeadLetter.from_entry(entry_id, fields, k.partition) for entry_id, fields in entries]
                letters += [d for d in page if wanted is None or d.job_id in wanted]
                after = f"({entries[-1][0]}"
        return letters

    async def replay(self, queue: str, job_ids: list[str] | None = None) -> list[str]:
        """Runs dead-lettered jobs again with fresh attempts and deletes their letters;
        returns the job ids queued (a stream-kept job's new entry gives it a new id). A
        letter already replayed is skipped."""
        jobs = self.jobs_of(queue)
        queued = [await jobs.replay(letter) for letter in await self._select_dead(queue, job_ids)]
        return [job_id for job_id in queued if job_id]

    async def purge(self, queue: str, job_ids: list[str] | None = None) -> int:
        """Deletes dead letters (all, or those of `job_ids`); returns how many."""
        partitions = self.partitions(queue)
        if job_ids is None:
            count = 0
            for k in partitions:  # not a transaction, so the replicas can be waited for on its connection
                async with self.redis.pipeline(transaction=False) as pipe:
                    length, _ = await self._wait.execute(pipe.xlen(k.dead).delete(k.dead), [k.dead])
                count += length
            return count
        by_partition: dict[int, list[str]] = {}
        for letter in await self._select_dead(queue, job_ids):
            by_partition.setdefault(letter.partition, []).append(letter.entry_id)
        purged = 0
        for p, ids in by_partition.items():
            async with self.redis.pipeline(transaction=False) as pipe:
                (removed,) = await self._wait.execute(pipe.xdel(partitions[p].dead, *ids), [partitions[p].dead])
            purged += removed
        return purged


def audit_key(prefix: str) -> str:
    """The capped stream recording management actions (written by the API). Its name
    is no queue's key, not even one of a queue called `audit`."""
    return f"{{{prefix}:audit}}:log"
