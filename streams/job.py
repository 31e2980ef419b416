"""The job envelope: job ids, states, and the record a job keeps in Redis.

The same `Job` model is read by the API, the CLI, the admin queries and the tests;
`Job.from_record` is the only place that knows how a record hash is laid out.
"""

from __future__ import annotations

import os
import time
from enum import StrEnum
from typing import Any

import orjson
from pydantic import BaseModel

_CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"


class JobState(StrEnum):
    WAITING = "waiting"
    ACTIVE = "active"
    DELAYED = "delayed"  # scheduled for later, or waiting out a retry backoff
    COMPLETED = "completed"
    FAILED = "failed"
    PAUSED = "paused"  # waiting in a paused queue (reported, never stored)


def new_job_id(queue: str) -> str:
    """``<queue>-<ULID>``: sortable by creation time, safe in URLs and key names."""
    value = (time.time_ns() // 1_000_000) << 80 | int.from_bytes(os.urandom(10), "big")
    chars = []
    for _ in range(26):
        value, digit = divmod(value, 32)
        chars.append(_CROCKFORD[digit])
    return f"{queue}-{''.join(reversed(chars))}"


def _int(value: str | None) -> int | None:
    return int(value) if value not in (None, "") else None


def _json(value: str | None) -> Any:
    return orjson.loads(value) if value not in (None, "") else None


def json_or_text(raw: str | None) -> Any:
    """Data as JSON; an entry written by a raw producer that is not JSON keeps its text."""
    try:
        return orjson.loads(raw or "null")
    except orjson.JSONDecodeError:
        return raw


class Job(BaseModel):
    """A job as stored. Times are milliseconds since the epoch (Redis server clock)."""

    id: str
    name: str
    queue: str
    state: JobState
    lane: str
    data: Any
    progress: Any = 0
    attemptsMade: int = 0
    maxAttempts: int = 1
    stalls: int = 0
    maxStalls: int = 0
    createdAt: int | None = None
    processedAt: int | None = None
    finishedAt: int | None = None
    dueAt: int | None = None
    duration: int | None = None
    returnvalue: Any = None
    failedReason: str | None = None
    errorType: str | None = None
    stacktrace: str | None = None

    @classmethod
    def from_record(cls, record: dict[str, str]) -> Job:
        return cls(
            id=record["id"],
            name=record.get("name", ""),
            queue=record["queue"],
            state=JobState(record["state"]),
            lane=record.get("lane", "normal"),
            data=json_or_text(record.get("data")),
            progress=_json(record.get("progress")) or 0,
            attemptsMade=_int(record.get("attemptsMade")) or 0,
            maxAttempts=_int(record.get("maxAttempts")) or 1,
            stalls=_int(record.get("stalls")) or 0,
            maxStalls=_int(record.get("maxStalls")) or 0,
            createdAt=_int(record.get("createdAt")),
            processedAt=_int(record.get("processedAt")),
            finishedAt=_int(record.get("finishedAt")),
            dueAt=_int(record.get("dueAt")),
            duration=_int(record.get("duration")),
            returnvalue=_json(record.get("returnvalue")),
            failedReason=record.get("failedReason"),
            errorType=record.get("errorType"),
            stacktrace=record.get("stacktrace"),
        )
