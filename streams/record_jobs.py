"""Recorded jobs: how a queue that keeps a record per job (a hash, and an index per
state) answers the job endpoints: one job, listings paged by cursor, remove, retry,
clean, replay, and its counts. The other way of keeping jobs is `stream_jobs`.
"""

from __future__ import annotations

from redis.asyncio import Redis

from streams.errors import JobNotFound, JobStateConflict
from streams.job import Job, JobState
from streams.listing import DeadLetter, JobDetail, JobPage, ListingCursor, listed_states
from streams.scripts import QueueScripts

# The indexes a listing walks for each stored state, and whether each lists newest first
# (delayed jobs wait in two sets scored by due time, and list soonest first).
INDEXES = {JobState.WAITING: ["waiting"], JobState.ACTIVE: ["active"], JobState.DELAYED: ["scheduled", "retrying"],
           JobState.COMPLETED: ["completed"], JobState.FAILED: ["failed"]}
NEWEST_FIRST = {"waiting": True, "active": True, "scheduled": False, "retrying": False,
                "completed": True, "failed": True}
STATE_INDEXES = ("waiting", "active", "retrying", "completed", "failed")


def _cursor_after(page: list[tuple[str, str, int]], start: ListingCursor | None) -> ListingCursor:
    """The cursor that resumes right after the last job of `page`: the score reached,
    and how many members with exactly that score were listed (scores tie often: a batch
    added in one call shares its millisecond)."""
    index, _, score = page[-1]
    ties = 0
    for item_index, _, item_score in reversed(page):
        if (item_index, item_score) != (index, score):
            break
        ties += 1
    run_is_whole_walk = ties == len(page) or page[-ties - 1][0] != index
    if run_is_whole_walk and start is not None and (start.index, start.score) == (index, score):
        ties += start.skip  # the members skipped to reach this page tie with it too
    return ListingCursor(index, score, ties)


class RecordJobs:
    def __init__(self, redis: Redis, scripts: QueueScripts) -> None:
        self.redis = redis
        self.scripts = scripts
        self.keys = scripts.keys

    # -- one job --------------------------------------------------------------------

    async def detail(self, job_id: str, log_limit: int) -> JobDetail:
        """A job's record, its newest `log_limit` log lines and the queue's pause flag,
        in one round trip."""
        k = self.keys
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.hgetall(k.job(job_id)).hget(k.meta, "paused")
            if log_limit > 0:
                pipe.lrange(k.logs(job_id), -log_limit, -1)
            record, paused, *logs = await pipe.execute()
        if not record:
            raise JobNotFound(job_id)
        return JobDetail(Job.from_record(record), logs[0] if logs else [], paused == "1")

    async def remove(self, job_id: str) -> int:
        """1 removed, 0 not found, -1 active (left to finish)."""
        return await self.scripts.remove(job_id)

    async def retry(self, job_id: str) -> str:
        outcome = await self.scripts.retry(job_id)
        if outcome == 0:
            raise JobNotFound(job_id)
        if outcome == -1:
            state = await self.redis.hget(self.keys.job(job_id), "state")
            raise JobStateConflict(f"job {job_id} is {state}: only failed jobs can be retried")
        return job_id

    async def replay(self, letter: DeadLetter) -> str | None:
        """Runs a dead-lettered job again under its own id; None when the letter is stale."""
        return letter.job_id if await self.scripts.retry(letter.job_id, letter.entry_id) == 1 else None

    async def clean(self, state: JobState, grace: float, limit: int) -> list[str]:
        return await self.scripts.clean(state.value, grace, limit)  # type: ignore[arg-type]

    # -- listings -------------------------------------------------------------------

    async def page(self, state: JobState | None, limit: int, cursor: str | None, paused: bool) -> JobPage:
        start = ListingCursor.parse(cursor) if cursor else None
        indexes = [index for s in listed_states(state, paused) for index in INDEXES[s]]
        if start is not None and start.index not in indexes:
            return JobPage([], paused, None)  # e.g. the queue was resumed between pages
        found: list[tuple[str, str, int]] = []
        for index in indexes[indexes.index(start.index) if start else 0:]:
            resume = start if start is not None and start.index == index else None
            found += await self._walk(index, resume, limit + 1 - len(found))
            if len(found) > limit:
                break
        page = found[:limit]
        next_cursor = str(_cursor_after(page, start)) if len(found) > limit else None
        return JobPage(await self._records([job_id for _, job_id, _ in page]), paused, next_cursor)

    async def ids(self, state: JobState, limit: int, paused: bool) -> list[str]:
        ids: list[str] = []
        for s in listed_states(state, paused):
            for index in INDEXES[s]:
                ids += [job_id for _, job_id, _ in await self._walk(index, None, limit - len(ids))]
                if len(ids) >= limit:
                    return ids
        return ids

    async def _walk(self, index: str, start: ListingCursor | None, count: int) -> list[tuple[str, str, int]]:
        """Up to `count` (index, job id, score) of one index, from `start` on."""
        key = self.keys.scheduled if index == "scheduled" else self.keys.state_index(index)
        skip = start.skip if start else 0
        if NEWEST_FIRST[index]:
            rows = await self.redis.zrange(key, start.score if start else "+inf", "-inf", desc=True,
                                           byscore=True, offset=skip, num=count, withscores=True)
        else:
            rows = await self.redis.zrange(key, start.score if start else "-inf", "+inf",
                                           byscore=True, offset=skip, num=count, withscores=True)
        return [(index, job_id, int(score)) for job_id, score in rows]

    async def _records(self, job_ids: list[str]) -> list[Job]:
        """The records of `job_ids` in one round trip; ids removed meanwhile are dropped."""
        async with self.redis.pipeline(transaction=False) as pipe:
            for job_id in job_ids:
                pipe.hgetall(self.keys.job(job_id))
            records = await pipe.execute()
        return [Job.from_record(r) for r in records if r]

    # -- counts ---------------------------------------------------------------------

    @staticmethod
    def counts(totals: dict[str, int], lag: int, pending: int) -> dict[str, int]:
        """waiting, active, delayed, completed, failed from the summed figures."""
        return {"waiting": totals["waiting"], "active": totals["active"],
                "delayed": totals["retrying"] + totals["scheduled"],
                "completed": totals["completed"], "failed": totals["failed"]}
