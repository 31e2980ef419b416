"""Stream-kept jobs: how a queue without per-job records (the signals fast path)
answers the job endpoints, from its streams alone. A job is its entry (id
`<queue>-<entry id>`, `<queue>-p<p>-<entry id>` on partition p > 0): waiting while the
group has not read it, active or delayed (backing off) while it is pending, and
completed or failed while the capped kept-outcomes streams, written with the ack or
the dead letter, still hold it. The other way of keeping jobs is `record_jobs`.
"""

from __future__ import annotations

from typing import Any

from redis.asyncio import Redis
from redis.exceptions import ResponseError

from config import QueuePolicy
from streams.errors import JobNotFound, JobStateConflict
from streams.job import Job, JobState
from streams.keys import GROUP, LANES, QueueKeys, entry_of_job
from streams.listing import DeadLetter, JobDetail, JobPage, ListingCursor, entry_order, listed_states
from streams.scripts import QueueScripts

PENDING_SCAN_MAX = 10_000  # pending entries per lane a listing of active or delayed jobs looks at
DEAD_SCAN_PAGE = 500
OLDEST_FIRST = {JobState.DELAYED}  # soonest retried first; the other states list newest first

Order = tuple[int, int]  # an entry id's two parts


class StreamJobs:
    def __init__(self, redis: Redis, partitions: tuple[QueueScripts, ...]) -> None:
        self.redis = redis
        self.partitions = partitions
        self.queue = partitions[0].queue
        self.policy: QueuePolicy = partitions[0].policy

    def _locate(self, job_id: str) -> tuple[QueueScripts, str]:
        found = entry_of_job(job_id)
        if found is None or found[0] >= len(self.partitions):
            raise JobNotFound(job_id)
        partition, entry_id = found
        return self.partitions[partition], entry_id

    def _job(self, job_id: str, fields: dict[str, Any]) -> Job:
        return Job.from_record({"createdAt": job_id.rsplit("-", 2)[-2], **fields, "id": job_id, "queue": self.queue,
                                "name": self.queue, "maxAttempts": self.policy.attempts,
                                "maxStalls": self.policy.max_stalls})

    # -- one job --------------------------------------------------------------------

    async def detail(self, job_id: str, log_limit: int) -> JobDetail:
        """The job as its streams tell it; stream-kept jobs keep no logs."""
        scripts, entry_id = self._locate(job_id)
        paused, record = await scripts.describe_entry(entry_id, job_id)
        if record is None:
            raise JobNotFound(job_id)
        return JobDetail(self._job(job_id, record), [], paused)

    async def remove(self, job_id: str) -> int:
        """1 removed, 0 not found, -1 active (left to finish)."""
        try:
            scripts, entry_id = self._locate(job_id)
        except JobNotFound:
            return 0
        return await scripts.remove_entry(entry_id, job_id)

    async def retry(self, job_id: str) -> str:
        """Queues a failed job again; its new entry gives it a new id, which is returned.
        Its dead letter goes in the same step, so it cannot be replayed a second time."""
        scripts, _ = self._locate(job_id)
        letter = await self._dead_letter_of(scripts.keys, job_id)
        new_id = await scripts.replay_entry(job_id, letter or "")
        if new_id is None:
            state = (await self.detail(job_id, 0)).job.state  # raises JobNotFound when it is gone
            raise JobStateConflict(f"job {job_id} is {state}: only failed jobs can be retried")
        return new_id

    async def _dead_letter_of(self, k: QueueKeys, job_id: str) -> str | None:
        """The entry id of the newest dead letter of `job_id`, if any."""
        before = "+"
        while entries := await self.redis.xrevrange(k.dead, before, "-", count=DEAD_SCAN_PAGE):
            for entry_id, fields in entries:
                if fields.get("job") == job_id:
                    return entry_id
            before = f"({entries[-1][0]}"
        return None

    async def replay(self, letter: DeadLetter) -> str | None:
        """Runs a dead-lettered job again as a new entry of the letter's own partition."""
        return await self.partitions[letter.partition].replay_entry(letter.job_id, letter.entry_id)

    async def clean(self, state: JobState, grace: float, limit: int) -> list[str]:
        removed: list[str] = []
        for scripts in self.partitions:
            removed += await scripts.clean_kept(state.value, grace, limit - len(removed))  # type: ignore[arg-type]
            if len(removed) >= limit:
                break
        return removed

    # -- listings -------------------------------------------------------------------

    async def page(self, state: JobState | None, limit: int, cursor: str | None, paused: bool) -> JobPage:
        """Jobs in listing order (delayed ones oldest entry first, the others newest
        first), merged over lanes and partitions by entry id. A cursor is the last
        entry id listed; entry ids can repeat across streams, so a page never ends
        inside a run of equal ids: it may hold a few more than `limit`."""
        start = ListingCursor.parse(cursor) if cursor else None
        states = listed_states(state, paused)
        names = [s.value for s in states]
        if start is not None and start.index not in names:
            return JobPage([], paused, None)
        found: list[tuple[JobState, Order, Job]] = []
        for s in states[names.index(start.index) if start else 0:]:
            after = (start.score, start.skip) if start is not None and start.index == s.value else None
            found += await self._walk(s, after, limit + 1 - len(found))
            if len(found) > limit:
                break
        end = min(limit, len(found))
        while 0 < end < len(found) and found[end][:2] == found[end - 1][:2]:
            end += 1
        page = found[:end]
        next_cursor = None
        if len(found) > end:
            last_state, (ms, seq), _ = page[-1]
            next_cursor = str(ListingCursor(last_state.value, ms, seq))
        return JobPage([job for _, _, job in page], paused, next_cursor)

    async def ids(self, state: JobState, limit: int, paused: bool) -> list[str]:
        ids: list[str] = []
        for s in listed_states(state, paused):
            ids += [job.id for _, _, job in await self._walk(s, None, limit - len(ids))][:limit - len(ids)]
        return ids

    async def _walk(self, state: JobState, after: Order | None, count: int) -> list[tuple[JobState, Order, Job]]:
        """The first `count` jobs in `state` after `after`, in listing order, and every
        job whose order ties with the last of them."""
        if count <= 0:
            return []
        if state in (JobState.COMPLETED, JobState.FAILED):
            rows = await self._kept(state, after, count)
        elif state is JobState.WAITING:
            rows = await self._unread(after, count)
        else:
            rows = await self._pending(state, after, count)
        rows.sort(key=lambda row: row[0], reverse=state not in OLDEST_FIRST)
        end = min(count, len(rows))
        while 0 < end < len(rows) and rows[end][0] == rows[end - 1][0]:
            end += 1
        return [(state, order, job) for order, job in rows[:end]]

    def _bounds(self, state: JobState, after: Order | None) -> tuple[str, str]:
        """XRANGE-style bounds of what follows `after` in listing order: (low, high)."""
        if after is None:
            return "-", "+"
        edge = f"({after[0]}-{after[1]}"
        return (edge, "+") if state in OLDEST_FIRST else ("-", edge)

    async def _kept(self, state: JobState, after: Order | None, count: int) -> list[tuple[Order, Job]]:
        low, high = self._bounds(state, after)
        async with self.redis.pipeline(transaction=False) as pipe:
            for scripts in self.partitions:
                pipe.xrevrange(scripts.keys.kept(state.value), high, low, count=count)
            replies = await pipe.execute()
        return [(entry_order(kept_id), self._job(fields["id"], {**fields, "state": state.value,
                                                                "finishedAt": kept_id.split("-")[0]}))
                for entries in replies for kept_id, fields in entries if fields.get("id")]

    async def _unread(self, after: Order | None, count: int) -> list[tuple[Order, Job]]:
        """Entries the group has not read yet: newer than its last-delivered id."""
        streams = [(k, lane) for k in (s.keys for s in self.partitions) for lane in LANES]
        async with self.redis.pipeline(transaction=False) as pipe:
            for k, lane in streams:
                pipe.xinfo_groups(k.lane(lane))
            infos = await pipe.execute(raise_on_error=False)
        _, high = self._bounds(JobState.WAITING, after)
        async with self.redis.pipeline(transaction=False) as pipe:
            for (k, lane), info in zip(streams, infos):
                groups = [] if isinstance(info, ResponseError) else info
                last = next((g["last-delivered-id"] for g in groups if g["name"] == GROUP), None)
                pipe.xrevrange(k.lane(lane), high, f"({last}" if last else "-", count=count)
            replies = await pipe.execute()
        return [(entry_order(entry_id), self._job(k.entry_job_prefix + entry_id,
                                                  {"state": "waiting", "lane": lane, "data": fields.get("data")}))
                for (k, lane), entries in zip(streams, replies) for entry_id, fields in entries]

    async def _pending(self, state: JobState, after: Order | None, count: int) -> list[tuple[Order, Job]]:
        """Delivered, unacked entries: delayed when their last run failed and they wait
        out the backoff (the failures hash says so), active otherwise."""
        streams = [(k, index, lane) for k in (s.keys for s in self.partitions) for index, lane in enumerate(LANES, 1)]
        now_reply = await self.redis.time()  # not in the pipeline: a cluster client sends it to any node
        async with self.redis.pipeline(transaction=False) as pipe:
            for k, _, lane in streams:
                pipe.xpending_range(k.lane(lane), GROUP, "-", "+", PENDING_SCAN_MAX)
            pending = await pipe.execute(raise_on_error=False)
        now = now_reply[0] * 1000 + now_reply[1] // 1000
        low, high = self._bounds(state, after)
        low_order = entry_order(low[1:]) if low.startswith("(") else None
        high_order = entry_order(high[1:]) if high.startswith("(") else None
        pending = [[] if isinstance(entries, ResponseError) else entries for entries in pending]
        async with self.redis.pipeline(transaction=False) as pipe:  # every pending entry's retry state
            for (k, index, _), entries in zip(streams, pending):
                pipe.hmget(k.failures, [f"{index}:{p['message_id']}" for p in entries] or ["-"])
            all_marks = await pipe.execute()
        chosen: list[tuple[QueueKeys, int, str, dict[str, Any]]] = []
        for (k, index, lane), entries, marks in zip(streams, pending, all_marks):
            for p, mark in zip(entries, marks):
                order = entry_order(p["message_id"])
                if (low_order and order <= low_order) or (high_order and order >= high_order):
                    continue
                kind, attempts, backoff = (mark or "active:0:0").split(":")
                if (kind == "delayed") != (state is JobState.DELAYED):
                    continue
                stalls = max(int(p["times_delivered"]) - 1 - int(attempts), 0)
                job = {"state": state.value, "lane": lane, "attemptsMade": attempts, "stalls": stalls}
                if kind == "delayed":
                    job["dueAt"] = now - int(p["time_since_delivered"]) + int(backoff)
                chosen.append((k, index, p["message_id"], job))
        chosen.sort(key=lambda c: entry_order(c[2]), reverse=state not in OLDEST_FIRST)
        chosen = chosen[:count + len(self.partitions) * len(LANES)]  # room for ties
        async with self.redis.pipeline(transaction=False) as pipe:
            for k, index, entry_id, _ in chosen:
                pipe.xrange(k.lanes[index - 1], entry_id, entry_id)
            bodies = await pipe.execute()
        return [(entry_order(entry_id), self._job(k.entry_job_prefix + entry_id,
                                                  {**job, "data": body[0][1].get("data") if body else None}))
                for (k, _, entry_id, job), body in zip(chosen, bodies)]

    # -- counts ---------------------------------------------------------------------

    @staticmethod
    def counts(totals: dict[str, int], lag: int, pending: int) -> dict[str, int]:
        """Unread entries wait; delivered ones run, or wait out a backoff (the failures
        hash); completed and failed are the outcomes retention keeps."""
        delayed = totals["backing_off"]
        return {"waiting": lag, "active": max(pending - delayed, 0), "delayed": delayed,
                "completed": totals["kept_completed"], "failed": totals["kept_failed"]}
