"""Every Redis key name the engine uses, built in one place.

All keys of queue Q carry the hash tag ``{<prefix>:Q}``, so they share one Redis
Cluster slot and every Lua script touches a single slot. A queue split into N
partitions has N such key sets: partition 0 keeps ``{<prefix>:Q}``, partition p > 0
is tagged ``{<prefix>:Q/p.n}`` (no queue name holds a slash), with n chosen so that the
N partitions' slots sit evenly around the slot space (`partition_tag`): they land on
different masters of a cluster. Nothing else formats keys.
"""

from __future__ import annotations

import binascii
import hashlib
import re
import zlib
from dataclasses import dataclass
from enum import StrEnum
from functools import cache

JOB_ID_RE = re.compile(r"^([a-z][a-z0-9_]{0,31})-[A-Za-z0-9_-]{1,100}$")
ENTRY_JOB_ID_RE = re.compile(r"^[a-z][a-z0-9_]{0,31}-(?:p([1-9][0-9]{0,2})-)?([0-9]{1,19}-[0-9]{1,19})$")
GROUP = "workers"


class Lane(StrEnum):
    """Priority lanes, in the order a strict reader serves them."""

    HIGH = "high"
    NORMAL = "normal"
    LOW = "low"


LANES: tuple[Lane, ...] = (Lane.HIGH, Lane.NORMAL, Lane.LOW)


def queue_of_job(job_id: str) -> str | None:
    """The queue named by a job id's prefix, or None when the id is malformed."""
    match = JOB_ID_RE.match(job_id)
    return match.group(1) if match else None


def entry_of_job(job_id: str) -> tuple[int, str] | None:
    """The partition and entry id a stream-kept job's id names (see
    `QueueKeys.entry_job_prefix`), or None when it names no entry."""
    match = ENTRY_JOB_ID_RE.match(job_id)
    return (int(match.group(1) or 0), match.group(2)) if match else None


@dataclass(frozen=True, slots=True)
class QueueKeys:
    """Key names of one queue. ``job_prefix`` and ``logs_prefix`` are handed to Lua,
    which appends a job id read from a stream entry (same hash tag, same slot)."""

    prefix: str
    queue: str
    partition: int = 0
    partitions: int = 1  # of the queue: where partition p's tag sits depends on it

    @property
    def tag(self) -> str:
        return partition_tag(self.prefix, self.queue, self.partition, self.partitions)

    @property
    def entry_job_prefix(self) -> str:
        """Stream-kept jobs: an entry's job id is this and its entry id. Partitions after the
        first say which they are, as the same entry id can occur in several streams."""
        return f"{self.queue}-p{self.partition}-" if self.partition else f"{self.queue}-"

    def lane(self, lane: Lane | str) -> str:
        return f"{self.tag}:stream:{lane}"

    @property
    def lanes(self) -> list[str]:
        return [self.lane(lane) for lane in LANES]

    @property
    def job_prefix(self) -> str:
        return f"{self.tag}:job:"

    def job(self, job_id: str) -> str:
        return self.job_prefix + job_id

    @property
    def logs_prefix(self) -> str:
        return f"{self.tag}:logs:"

    def logs(self, job_id: str) -> str:
        return self.logs_prefix + job_id

    def state_index(self, state: str) -> str:
        """Sorted set of the job ids in one state (waiting, active, retrying,
        completed, failed); scores are the time the job entered the state,
        except retrying, scored by the time the retry is due."""
        return f"{self.tag}:state:{state}"

    @property
    def inflight(self) -> str:
        """Hash from a delivered entry ("<lane index>:<entry id>") to its job id, so a
        pending entry whose body was trimmed or deleted can still be settled."""
        return f"{self.tag}:inflight"

    @property
    def failures(self) -> str:
        """Stream-kept jobs (no job records): hash from a failed entry ("<lane index>:<entry
        id>") to "<state>:<attempts>:<backoff ms>", its retry state while it stays pending."""
        return f"{self.tag}:failures"

    def kept(self, state: str) -> str:
        """Stream-kept jobs: stream of the newest outcomes retention keeps (state
        `completed` or `failed`), one entry per job with the fields a job record holds."""
        return f"{self.tag}:kept:{state}"

    @property
    def scheduled(self) -> str:
        """Jobs added with a delay, scored by due time (ms); moved to a lane when due."""
        return f"{self.tag}:scheduled"

    @property
    def dead(self) -> str:
        return f"{self.tag}:dead"

    @property
    def events(self) -> str:
        return f"{self.tag}:events"

    @property
    def meta(self) -> str:
        """Hash of queue-wide state: the paused flag, the weighted-read cycle, and the
        totals of runs completed and of jobs failed for good (dead-lettered)."""
        return f"{self.tag}:meta"

    @property
    def limiter(self) -> str:
        return f"{self.tag}:limiter"

    def run_mark(self, run: str) -> str:
        """The outcome a stream-kept job's run recorded on failure, under its run token,
        kept a short while so a call re-sent after a lost reply finds it (fail_entry.lua)."""
        return f"{self.tag}:run:{run}"

    @property
    def run_mark_prefix(self) -> str:
        return self.run_mark("")

    @property
    def idempotency_prefix(self) -> str:
        """Prefix of idempotency keys; the rest is `idempotency_digest(key)`."""
        return f"{self.tag}:idem:"


def partition_keys(prefix: str, queue: str, partitions: int) -> tuple[QueueKeys, ...]:
    """The key sets of every partition of a queue, partition 0 first."""
    return tuple(QueueKeys(prefix, queue, p, partitions) for p in range(partitions))


SLOTS = 16384


def cluster_slot(tag: str) -> int:
    """The Redis Cluster slot of a hash tag's content: CRC16 (XMODEM) mod 16384."""
    return binascii.crc_hqx(tag.encode(), 0) % SLOTS


TAG_WINDOW = 32  # slots either side of a partition's target slot


@cache
def partition_tag(prefix: str, queue: str, partition: int, partitions: int = 1) -> str:
    """``{<prefix>:Q}`` for partition 0; for p > 0 of N, ``{<prefix>:Q/p.n}`` with the
    smallest n >= 0 whose slot lies within TAG_WINDOW slots of partition 0's slot plus
    p * 16384 / N: the N tags sit evenly around the slots, so a cluster of M equal masters
    serves N / M partitions each (N a multiple of M)."""
    base = f"{prefix}:{queue}"
    if not partition:
        return f"{{{base}}}"
    target = (cluster_slot(base) + partition * SLOTS // partitions) % SLOTS
    n = 0
    while (cluster_slot(f"{base}/{partition}.{n}") - target + TAG_WINDOW) % SLOTS > 2 * TAG_WINDOW:
        n += 1
    return f"{{{base}/{partition}.{n}}}"


def partition_of(value: str, partitions: int) -> int:
    """The partition an entry routes to: CRC-32 (IEEE, as zlib and most languages'
    standard libraries compute it) of the routing value's UTF-8 bytes, modulo the
    partition count. Producers in other languages compute the same (README)."""
    return zlib.crc32(value.encode()) % partitions if partitions > 1 else 0


@dataclass(frozen=True, slots=True)
class WorkerKeys:
    """Key names of the worker registry. The tag ``{<prefix>:_workers}`` is no queue's:
    queue names start with a letter."""

    prefix: str

    @property
    def tag(self) -> str:
        return f"{{{self.prefix}:_workers}}"

    @property
    def roster(self) -> str:
        """Set of the ids of worker processes that registered; an id whose entry has
        expired is dropped from it when the registry is listed."""
        return f"{self.tag}:roster"

    def worker(self, worker_id: str) -> str:
        """Hash of one worker process (host, pid, queues, times, in-flight jobs),
        expiring unless its heartbeat refreshes it."""
        return f"{self.tag}:worker:{worker_id}"


def idempotency_digest(key: str) -> str:
    """Callers' idempotency keys are hashed, so no input can shape a key name."""
    return hashlib.sha256(key.encode()).hexdigest()[:32]
