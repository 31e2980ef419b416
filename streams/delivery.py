"""What a read hands a worker: each job as a `Delivery` (its entry, the delivery count
that fences it and the token of its run), and the shapes of a read's and a reclaim
page's results.
"""

from __future__ import annotations

import itertools
import secrets
from dataclasses import dataclass, field
from typing import Any, Literal


_RUN_PREFIX = secrets.token_hex(6)
_RUN_COUNTER = itertools.count()


def new_run() -> str:
    """A token naming one run (one delivery to this process), unique across processes:
    the settling scripts record it, so a call re-sent after a lost reply finds its own
    outcome instead of counting it again or calling itself fenced out."""
    return f"{_RUN_PREFIX}{next(_RUN_COUNTER):x}"


@dataclass(frozen=True, slots=True)
class Delivery:
    """A job handed to this worker: which entry, the delivery count that fences it, and
    the token of this run."""

    lane: int  # 1-based lane index, as in the scripts
    entry_id: str
    job_id: str
    raw: str | None  # the job's data as JSON text (None: the entry had none)
    attempts_made: int
    stalls: int
    delivery: int
    traceparent: str | None = None  # the trace context of the span that added the job
    invalid: str = ""  # why the entry cannot run ('' when it can): its data is not UTF-8
    run: str = field(default_factory=new_run)

    @property
    def entry_key(self) -> str:
        """The entry's name across lanes (entry ids are unique per stream only); the
        same form the in-flight hash uses."""
        return f"{self.lane}:{self.entry_id}"

    @classmethod
    def from_reply(cls, row: list[Any]) -> Delivery:
        """A row of read.lua or reclaim.lua: lane, entry id, job id, data, attempts made,
        stalls, delivery count[, traceparent]."""
        lane, entry_id, job_id, raw, attempts, stalls, delivery = row[:7]
        return cls(int(lane), entry_id, job_id, raw or None, int(attempts or 0), int(stalls or 0),
                   int(delivery), (row[7] or None) if len(row) > 7 else None, row[8] if len(row) > 8 else "")


@dataclass(frozen=True, slots=True)
class ReadResult:
    kind: Literal["jobs", "paused", "limited", "empty"]
    jobs: list[Delivery]
    wait_ms: int = -1  # limited: until a permit frees; empty: until the next scheduled job
    last_ids: tuple[str, ...] = ()  # empty: each lane's newest id, to block on with XREAD


@dataclass(frozen=True, slots=True)
class ReclaimPage:
    lane: int  # where the walk goes on; 0 when it is done
    cursor: str
    jobs: list[Delivery]
    settled: int
