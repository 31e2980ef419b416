"""What job listings and lookups return, on either way of keeping jobs: a page of jobs
with the cursor that resumes it, one job with its logs, the state callers see, and
dead letters.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from streams.job import Job, JobState, json_or_text

_CURSOR = re.compile(r"^(waiting|active|delayed|scheduled|retrying|completed|failed):(\d{1,16}):(\d{1,9})$")


@dataclass(frozen=True, slots=True)
class ListingCursor:
    """Where a job listing stopped: the index it walked and a position in it, two
    numbers whose meaning the way of keeping jobs defines (a score and how many members
    with that score were listed; or an entry id's two parts)."""

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


def listed_states(state: JobState | None, paused: bool) -> list[JobState]:
    """The stored states a listing of `state` walks (every one, in listing order, for None)."""
    if state is None:
        return [JobState.WAITING, JobState.ACTIVE, JobState.DELAYED, JobState.COMPLETED, JobState.FAILED]
    if state in (JobState.WAITING, JobState.PAUSED):
        return [JobState.WAITING] if paused == (state is JobState.PAUSED) else []
    return [state]


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
        return cls(entry_id, f.get("job", ""), f.get("name", ""), json_or_text(f.get("data")),
                   f.get("error", ""), f.get("errorType", ""), int(f.get("attempts") or 0),
                   int(f.get("stalls") or 0), int(f["createdAt"]) if f.get("createdAt") else None,
                   int(f.get("failedAt") or 0), partition)


def first_letters(letters: list[DeadLetter], limit: int) -> list[DeadLetter]:
    """The first `limit` letters, and those after them that share the last one's entry
    id (a cursor of that id would skip them)."""
    end = min(limit, len(letters))
    while 0 < end < len(letters) and letters[end].entry_id == letters[end - 1].entry_id:
        end += 1
    return letters[:end]


def entry_order(entry_id: str) -> tuple[int, int]:
    """A stream entry id as two numbers, for ordering ids of several streams."""
    ms, _, seq = entry_id.partition("-")
    return int(ms), int(seq or 0)
