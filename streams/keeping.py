"""The two ways a queue keeps its jobs, behind one interface: a record per job
(`record_jobs`), or nothing but the streams and capped outcome streams (`stream_jobs`,
the signals fast path). The policy row's `records` field chooses; `keeping` is the
only code that reads it.
"""

from __future__ import annotations

from typing import Protocol

from redis.asyncio import Redis

from config import QueuePolicy
from streams.job import JobState
from streams.listing import DeadLetter, JobDetail, JobPage
from streams.record_jobs import RecordJobs
from streams.scripts import QueueScripts
from streams.stream_jobs import StreamJobs


class JobKeeping(Protocol):
    async def detail(self, job_id: str, log_limit: int) -> JobDetail: ...

    async def page(self, state: JobState | None, limit: int, cursor: str | None, paused: bool) -> JobPage: ...

    async def ids(self, state: JobState, limit: int, paused: bool) -> list[str]: ...

    async def remove(self, job_id: str) -> int: ...

    async def retry(self, job_id: str) -> str: ...

    async def replay(self, letter: DeadLetter) -> str | None: ...

    async def clean(self, state: JobState, grace: float, limit: int) -> list[str]: ...

    @staticmethod
    def counts(totals: dict[str, int], lag: int, pending: int) -> dict[str, int]: ...


def keeps_records(policy: QueuePolicy) -> bool:
    """True when the queue keeps a record per job; False on the fast path."""
    return policy.records


def keeping(redis: Redis, partitions: tuple[QueueScripts, ...]) -> JobKeeping:
    """The keeping of the queue whose partitions' scripts are given."""
    if keeps_records(partitions[0].policy):
        return RecordJobs(redis, partitions[0])
    return StreamJobs(redis, partitions)
