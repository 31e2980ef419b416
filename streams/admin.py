"""Queue control and inspection: counts, stream figures, pause/resume, one job's
record and logs, job listings paged by cursor, remove, retry, clean, the dead-letter
stream, and the key of the audit trail of these actions.

Used by the CLI and the API. Every queue name is checked against the policy table
and every job id against its format before a key is built from it. A partitioned
queue's figures are the sums over its partitions; pause, resume, replay and purge act
on every partition.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import orjson
from redis.asyncio import Redis
from redis.exceptions import ResponseError

from config import Settings
from streams.errors import JobNotFound, JobStateConflict, UnknownQueue
from streams.job import Job, JobState
from streams.keys import GROUP, LANES, QueueKeys, partition_keys, queue_of_job
from streams.scripts import SCRIPT_NAMES, QueueScripts, Scripts, script_source

FinishedState = Literal["completed", "failed"]
STATE_INDEXES = ("waiting", "active", "retrying", "completed", "failed")
REMOVE_CONCURRENCY = 16  # script calls in flight at once for a bulk removal
ADMIN_SCRIPT_NAMES = ("replay_entry",)  # the engine's scripts.py loads the others


@dataclass(slots=True)
class ConsumerInfo:
    name: str
    pending: int
    idle_ms: int


@dataclass(slots=True)
class GroupInfo:
    """One consumer group of a lane stream, as XINFO GROUPS and XPENDING report it."""

    name: str
    lag: int | None  # None when Redis cannot tell (entries deleted after the group's position)
    pending: int
    oldest_pending_ms: int | None
    last_delivered_id: str
    consumers: list[ConsumerInfo] = field(default_factory=list)


@dataclass(slots=True)
class LaneInfo:
    """One lane stream with every group reading it; the flat figures are the engine's
    own group's (`workers`): with no group yet, every entry counts as lag."""

    lane: str
    key: str
    length: int
    groups: list[GroupInfo] = field(default_factory=list)
    partition: int = 0

    @property
    def engine_group(self) -> GroupInfo | None:
        return next((g for g in self.groups if g.name == GROUP), None)

    @property
    def lag(self) -> int | None:
        group = self.engine_group
        return self.length if group is None else group.lag

    @property
    def pending(self) -> int:
        group = self.engine_group
        return 0 if group is None else group.pending

    @property
    def oldest_pending_ms(self) -> int | None:
        group = self.engine_group
        return None if group is None else group.oldest_pending_ms

    @property
    def last_delivered_id(self) -> str | None:
        group = self.engine_group
        return None if group is None else group.last_delivered_id

    @property
    def consumers(self) -> list[ConsumerInfo]:
        group = self.engine_group
        return [] if group is None else group.consumers


@dataclass(slots=True)
class DeadStreamInfo:
    key: str
    length: int
    partition: int = 0


@dataclass(slots=True)
class QueueStatus:
    """One queue's figures; `lanes` and `dead_streams` list every partition's."""

    queue: str
    paused: bool
    counts: dict[str, int]
    lanes: list[LaneInfo]
    dead_streams: list[DeadStreamInfo]
    # Since the queue's keys were created, whatever retention or clean removed since:
    completed_total: int = 0  # runs completed
    failed_total: int = 0  # jobs failed for good (dead-lettered)

    @property
    def dead(self) -> int:
        return sum(d.length for d in self.dead_streams)

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


def _letter_data(raw: str | None) -> Any:
    """A dead letter's data; an entry dead-lettered for not being JSON keeps its text."""
    try:
        return orjson.loads(raw or "null")
    except orjson.JSONDecodeError:
        return raw


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
    partition: int = 0  # whose dead-letter stream holds it

    @classmethod
    def from_entry(cls, entry_id: str, f: dict[str, str], partition: int = 0) -> DeadLetter:
        return cls(entry_id, f.get("job", ""), f.get("name", ""), _letter_data(f.get("data")),
                   f.get("error", ""), f.get("errorType", ""), int(f.get("attempts") or 0),
                   int(f.get("stalls") or 0), int(f["createdAt"]) if f.get("createdAt") else None,
                   int(f.get("failedAt") or 0), partition)


# The indexes a job listing walks, in order, and whether each lists newest first
# (delayed jobs wait in two sets scored by due time, and list soonest first).
LISTED_NEWEST_FIRST = {"waiting": True, "active": True, "scheduled": False, "retrying": False,
                       "completed": True, "failed": True}
_CURSOR = re.compile(r"^(waiting|active|scheduled|retrying|completed|failed):(\d{1,16}):(\d{1,9})$")


@dataclass(frozen=True, slots=True)
class ListingCursor:
    """Where a job listing stopped: the index it walked, the score it reached, and how
    many members with exactly that score it listed already (scores tie often: a batch
    added in one call shares its millisecond)."""

    index: str
    score: int
    skip: int

    @classmethod
    def parse(cls, text: str) -> ListingCursor:
        match = _CURSOR.match(text)
        if match is None:
            raise ValueError("not a cursor this listing gave out")
        return cls(match[1], int(match[2]), int(match[3]))

    def __str__(self) -> str:
        return f"{self.index}:{self.score}:{self.skip}"


@dataclass(slots=True)
class JobPage:
    jobs: list[Job]
    paused: bool  # the queue's flag when the page was read: its waiting jobs report `paused`
    next_cursor: str | None  # None on the last page


@dataclass(slots=True)
class JobDetail:
    job: Job
    logs: list[str]
    paused: bool


def reported_state(job: Job, paused: bool) -> JobState:
    """The state callers see: a waiting job of a paused queue is `paused`."""
    return JobState.PAUSED if paused and job.state is JobState.WAITING else job.state


def _listed_indexes(state: JobState | None, paused: bool) -> list[str]:
    if state is None:
        return list(LISTED_NEWEST_FIRST)
    if state is JobState.DELAYED:
        return ["scheduled", "retrying"]
    if state in (JobState.WAITING, JobState.PAUSED):
        return ["waiting"] if paused == (state is JobState.PAUSED) else []
    return [state.value]


def _cursor_after(page: list[tuple[str, str, int]], start: ListingCursor | None) -> ListingCursor:
    """The cursor that resumes right after the last job of `page`."""
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


def _ok(reply: Any) -> Any:
    """A pipeline reply, raising the error it holds (pipelines run with raise_on_error=False)."""
    if isinstance(reply, Exception):
        raise reply
    return reply


def _vanished(reply: Any) -> bool:
    """True for the error XINFO and XPENDING give when the stream or group does not exist."""
    return isinstance(reply, ResponseError) and ("no such key" in str(reply) or "NOGROUP" in str(reply))


def _groups(reply: Any) -> list[GroupInfo]:
    if _vanished(reply):
        return []
    return [GroupInfo(g["name"], None if g.get("lag") is None else int(g["lag"]), int(g["pending"]), None,
                      g["last-delivered-id"]) for g in _ok(reply)]


class QueueAdmin:
    def __init__(self, redis: Redis, settings: Settings) -> None:
        self.redis = redis
        self.settings = settings
        self._scripts = Scripts(redis)
        self._replay_entry = redis.register_script(script_source("replay_entry"))

    async def load_scripts(self) -> None:
        """Loads the engine's scripts and the admin's own, so a syntax error fails start-up."""
        await self._scripts.load()
        await self.redis.script_load(self._replay_entry.script)

    async def scripts_loaded(self) -> bool:
        """False when Redis lost any script (a restart, a failover, SCRIPT FLUSH)."""
        shas = [self._scripts[name].sha for name in SCRIPT_NAMES] + [self._replay_entry.sha]
        return all(await self.redis.script_exists(*shas))

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

    def _job_keys(self, job_id: str) -> QueueKeys:
        queue = queue_of_job(job_id)
        if queue is None or queue not in self.settings.queues:
            raise JobNotFound(job_id)
        return self.keys(queue)

    # -- figures ------------------------------------------------------------------

    async def status(self, queue: str) -> QueueStatus:
        return (await self.statuses([queue]))[0]

    async def all_status(self) -> list[QueueStatus]:
        return await self.statuses(list(self.settings.queues))

    async def statuses(self, queues: Sequence[str]) -> list[QueueStatus]:
        """Counts and stream figures of several queues in two round trips: the counts
        and each lane's groups first, then each group's consumers and oldest entry."""
        parts = [self.partitions(queue) for queue in queues]
        async with self.redis.pipeline(transaction=False) as pipe:
            for k in (k for keys in parts for k in keys):
                for state in STATE_INDEXES:
                    pipe.zcard(k.state_index(state))
                pipe.zcard(k.scheduled).hmget(k.meta, "paused", "completed", "failed").xlen(k.dead).hlen(k.failures)
                for lane_key in k.lanes:
                    pipe.xlen(lane_key).xinfo_groups(lane_key)
            replies = iter(await pipe.execute(raise_on_error=False))
        per_partition = len(STATE_INDEXES) + 4 + 2 * len(LANES)
        statuses = [self._status(keys, [[next(replies) for _ in range(per_partition)] for _ in keys])
                    for keys in parts]
        await self._describe_groups([lane for st in statuses for lane in st.lanes])
        return statuses

    def _status(self, partitions: tuple[QueueKeys, ...], replies: list[list[Any]]) -> QueueStatus:
        """One queue's figures from each partition's replies, summed."""
        queue = partitions[0].queue
        totals = dict.fromkeys(("waiting", "active", "retrying", "completed", "failed", "scheduled",
                                "backing_off", "runs_completed", "runs_failed"), 0)
        lanes: list[LaneInfo] = []
        dead_streams: list[DeadStreamInfo] = []
        paused = False
        for k, own in zip(partitions, replies):
            *indexes, scheduled, meta, dead, backing_off = map(_ok, own[:9])
            flag, runs_completed, runs_failed = meta or (None, None, None)
            paused = paused or flag == "1"  # pause sets every partition's flag
            for name, count in zip(("waiting", "active", "retrying", "completed", "failed"), indexes):
                totals[name] += count
            totals["scheduled"] += scheduled
            totals["backing_off"] += backing_off
            totals["runs_completed"] += int(runs_completed or 0)
            totals["runs_failed"] += int(runs_failed or 0)
            lane_replies = own[9:]
            lanes += [LaneInfo(lane, k.lane(lane), _ok(lane_replies[2 * j]), _groups(lane_replies[2 * j + 1]),
                               k.partition) for j, lane in enumerate(LANES)]
            dead_streams.append(DeadStreamInfo(k.dead, dead, k.partition))
        waiting, active, retrying = totals["waiting"], totals["active"], totals["retrying"]
        completed, failed = totals["completed"], totals["failed"]
        if not self.settings.policy(queue).records:
            # No job records on the fast path: its counts come from the streams themselves.
            # Unread entries wait; delivered ones run, or wait out a backoff (the failures hash).
            waiting = sum(lane.lag or 0 for lane in lanes)
            retrying = totals["backing_off"]
            active = max(sum(lane.pending for lane in lanes) - retrying, 0)
            # Completed: successful runs counted as batches are acked; failed: the dead letters kept.
            completed, failed = totals["runs_completed"], sum(d.length for d in dead_streams)
        counts = {"waiting": 0 if paused else waiting, "active": active,
                  "delayed": retrying + totals["scheduled"], "completed": completed, "failed": failed,
                  "paused": waiting if paused else 0}
        return QueueStatus(queue, paused, counts, lanes, dead_streams, totals["runs_completed"],
                           totals["runs_failed"])

    async def _describe_groups(self, lanes: list[LaneInfo]) -> None:
        """Fills in each group's consumers and the age of its oldest pending entry."""
        groups = [(lane, group) for lane in lanes for group in lane.groups]
        if not groups:
            return
        async with self.redis.pipeline(transaction=False) as pipe:
            for lane, group in groups:
                pipe.xinfo_consumers(lane.key, group.name)
                pipe.xpending_range(lane.key, group.name, "-", "+", 1)
            replies = await pipe.execute(raise_on_error=False)
        for (lane, group), consumers, oldest in zip(groups, replies[::2], replies[1::2]):
            # A group deleted since the first round trip reads as empty, not as an error.
            if not _vanished(consumers):
                group.consumers = [ConsumerInfo(c["name"], int(c["pending"]), int(c["idle"]))
                                   for c in _ok(consumers)]
            if not _vanished(oldest) and _ok(oldest):
                group.oldest_pending_ms = int(oldest[0]["time_since_delivered"])

    # -- pause ------------------------------------------------------------------

    async def pause(self, queue: str) -> None:
        await self._set_paused(queue, True)

    async def resume(self, queue: str) -> None:
        await self._set_paused(queue, False)

    async def _set_paused(self, queue: str, paused: bool) -> None:
        for k in self.partitions(queue):  # one transaction per partition: each is its own slot
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

    async def jobs(self, queue: str, state: JobState, limit: int = 100) -> list[Job]:
        """The first page of jobs in one state (see `job_page`)."""
        return (await self.job_page(queue, state, limit)).jobs

    async def job_page(self, queue: str, state: JobState | None = None, limit: int = 100,
                       cursor: str | None = None) -> JobPage:
        """One page of a queue's jobs in one state, or in every state (waiting, active,
        delayed, completed, failed, in that order): delayed ones soonest due first, the
        others newest first. Pass `next_cursor` back as `cursor` for the next page; it
        resumes where this page ended, however many jobs were added since. A malformed
        cursor raises ValueError."""
        k = self.keys(queue)
        start = ListingCursor.parse(cursor) if cursor else None
        paused = await self.redis.hget(k.meta, "paused") == "1"
        indexes = _listed_indexes(state, paused)
        if start is not None and start.index not in indexes:
            return JobPage([], paused, None)  # e.g. the queue was resumed between pages
        found: list[tuple[str, str, int]] = []
        for index in indexes[indexes.index(start.index) if start else 0:]:
            resume = start if start is not None and start.index == index else None
            found += await self._walk(k, index, resume, limit + 1 - len(found))
            if len(found) > limit:
                break
        page = found[:limit]
        next_cursor = str(_cursor_after(page, start)) if len(found) > limit else None
        return JobPage(await self._records(k, [job_id for _, job_id, _ in page]), paused, next_cursor)

    async def _walk(self, k: QueueKeys, index: str, start: ListingCursor | None,
                    count: int) -> list[tuple[str, str, int]]:
        """Up to `count` (index, job id, score) of one index, from `start` on."""
        key = k.scheduled if index == "scheduled" else k.state_index(index)
        skip = start.skip if start else 0
        if LISTED_NEWEST_FIRST[index]:
            rows = await self.redis.zrange(key, start.score if start else "+inf", "-inf", desc=True,
                                           byscore=True, offset=skip, num=count, withscores=True)
        else:
            rows = await self.redis.zrange(key, start.score if start else "-inf", "+inf",
                                           byscore=True, offset=skip, num=count, withscores=True)
        return [(index, job_id, int(score)) for job_id, score in rows]

    async def _records(self, k: QueueKeys, job_ids: list[str]) -> list[Job]:
        """The records of `job_ids` in one round trip; ids removed meanwhile are dropped."""
        async with self.redis.pipeline(transaction=False) as pipe:
            for job_id in job_ids:
                pipe.hgetall(k.job(job_id))
            records = await pipe.execute()
        return [Job.from_record(r) for r in records if r]

    async def job_detail(self, job_id: str, log_limit: int = 1000) -> JobDetail:
        """A job's record, its newest `log_limit` log lines and its queue's pause flag,
        in one round trip."""
        k = self._job_keys(job_id)
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.hgetall(k.job(job_id)).lrange(k.logs(job_id), -max(log_limit, 1), -1).hget(k.meta, "paused")
            record, logs, paused = await pipe.execute()
        if not record:
            raise JobNotFound(job_id)
        return JobDetail(Job.from_record(record), logs if log_limit > 0 else [], paused == "1")

    async def job_ids(self, queue: str, state: JobState, limit: int) -> list[str]:
        """Up to `limit` ids of jobs in one state, in listing order."""
        k = self.keys(queue)
        paused = await self.redis.hget(k.meta, "paused") == "1"
        ids: list[str] = []
        for index in _listed_indexes(state, paused):
            ids += [job_id for _, job_id, _ in await self._walk(k, index, None, limit - len(ids))]
            if len(ids) >= limit:
                break
        return ids

    async def remove_many(self, queue: str, job_ids: Sequence[str]) -> dict[str, int]:
        """Removes each job as `remove` does; returns each id's outcome: 1 removed, 0 not
        found (ids of other queues included), -1 active."""
        scripts = self.scripts(queue)
        outcomes = dict.fromkeys(job_ids, 0)
        mine = [job_id for job_id in outcomes if queue_of_job(job_id) == queue]
        for start in range(0, len(mine), REMOVE_CONCURRENCY):
            chunk = mine[start:start + REMOVE_CONCURRENCY]
            results = await asyncio.gather(*(scripts.remove(job_id) for job_id in chunk))
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
            letters.sort(key=lambda d: _entry_order(d.entry_id))
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
        returns the job ids queued. A letter already replayed is skipped. On a queue
        without job records a replayed job is a new entry, so it has a new id."""
        scripts = self.scripts(queue)
        partitions = self.partitions(queue)
        records = self.settings.policy(queue).records
        queued = []
        for letter in await self._select_dead(queue, job_ids):
            if records:
                if await scripts.retry(letter.job_id, letter.entry_id) == 1:
                    queued.append(letter.job_id)
            elif entry := await self._replay_letter(k := partitions[letter.partition], letter):
                queued.append(k.entry_job_prefix + entry)  # back into the letter's own partition
        return queued

    async def _replay_letter(self, k: QueueKeys, letter: DeadLetter) -> str | None:
        keys = [*k.lanes, k.dead, k.events]
        args = [letter.entry_id, letter.job_id, self.settings.events_max_len, k.entry_job_prefix]
        return await self._replay_entry(keys, args)

    async def purge(self, queue: str, job_ids: list[str] | None = None) -> int:
        """Deletes dead letters (all, or those of `job_ids`); returns how many."""
        partitions = self.partitions(queue)
        if job_ids is None:
            count = 0
            for k in partitions:
                async with self.redis.pipeline(transaction=True) as pipe:
                    length, _ = await pipe.xlen(k.dead).delete(k.dead).execute()
                count += length
            return count
        by_partition: dict[int, list[str]] = {}
        for letter in await self._select_dead(queue, job_ids):
            by_partition.setdefault(letter.partition, []).append(letter.entry_id)
        return sum([await self.redis.xdel(partitions[p].dead, *ids) for p, ids in by_partition.items()])


def first_letters(letters: list[DeadLetter], limit: int) -> list[DeadLetter]:
    """The first `limit` letters, and those after them that share the last one's entry
    id (a cursor of that id would skip them)."""
    end = min(limit, len(letters))
    while 0 < end < len(letters) and letters[end].entry_id == letters[end - 1].entry_id:
        end += 1
    return letters[:end]


def _entry_order(entry_id: str) -> tuple[int, int]:
    ms, _, seq = entry_id.partition("-")
    return int(ms), int(seq or 0)


def audit_key(prefix: str) -> str:
    """The capped stream recording management actions (written by the API). Its name
    is no queue's key, not even one of a queue called `audit`."""
    return f"{{{prefix}:audit}}:log"
