"""A queue's figures: counts by state, each lane's length and consumer groups (lag,
pending, consumers, the oldest pending entry), dead letters and the all-time totals,
read for many queues in two round trips. QueueAdmin.statuses is the caller.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import ResponseError

from streams.keeping import JobKeeping
from streams.keys import GROUP, LANES, QueueKeys
from streams.record_jobs import STATE_INDEXES


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

    def figures(self) -> dict[str, Any]:
        """The flat figures every view (API, CLI, dashboard) shows, under the same names:
        the counts of what retention keeps, and the all-time totals beside them."""
        return {**self.counts, "completedTotal": self.completed_total, "failedTotal": self.failed_total,
                "dead": self.dead, "length": self.length, "lag": self.lag, "pending": self.pending}


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


async def read_statuses(redis: Redis, parts: Sequence[tuple[QueueKeys, ...]],
                        keepings: Sequence[JobKeeping]) -> list[QueueStatus]:
    """Counts and stream figures of several queues (each given by its partitions' keys
    and its way of keeping jobs) in two round trips: the counts and each lane's groups
    first, then each group's consumers and oldest entry."""
    async with redis.pipeline(transaction=False) as pipe:
        for k in (k for keys in parts for k in keys):
            for state in STATE_INDEXES:
                pipe.zcard(k.state_index(state))
            pipe.zcard(k.scheduled).hmget(k.meta, "paused", "completed", "failed").xlen(k.dead).hvals(k.failures)
            pipe.xlen(k.kept("completed")).xlen(k.kept("failed"))
            for lane_key in k.lanes:
                pipe.xlen(lane_key).xinfo_groups(lane_key)
        replies = iter(await pipe.execute(raise_on_error=False))
    per_partition = len(STATE_INDEXES) + 6 + 2 * len(LANES)
    statuses = [_status(keys, keeping, [[next(replies) for _ in range(per_partition)] for _ in keys])
                for keys, keeping in zip(parts, keepings)]
    await _describe_groups(redis, [lane for st in statuses for lane in st.lanes])
    return statuses


def _status(partitions: tuple[QueueKeys, ...], keeping: JobKeeping, replies: list[list[Any]]) -> QueueStatus:
    """One queue's figures from each partition's replies, summed."""
    totals = dict.fromkeys(("waiting", "active", "retrying", "completed", "failed", "scheduled", "backing_off",
                            "kept_completed", "kept_failed", "runs_completed", "runs_failed"), 0)
    lanes: list[LaneInfo] = []
    dead_streams: list[DeadStreamInfo] = []
    paused = False
    for k, own in zip(partitions, replies):
        *indexes, scheduled, meta, dead, marks, kept_completed, kept_failed = map(_ok, own[:11])
        # Stream-kept entries backing off after a failure (the others' marks are of retries running again).
        backing_off = sum(1 for mark in marks if mark.startswith("delayed:"))
        flag, runs_completed, runs_failed = meta or (None, None, None)
        paused = paused or flag == "1"  # pause sets every partition's flag
        for name, count in zip(STATE_INDEXES, indexes):
            totals[name] += count
        for name, count in (("scheduled", scheduled), ("backing_off", backing_off),
                            ("kept_completed", kept_completed), ("kept_failed", kept_failed),
                            ("runs_completed", int(runs_completed or 0)), ("runs_failed", int(runs_failed or 0))):
            totals[name] += count
        lane_replies = own[11:]
        lanes += [LaneInfo(lane, k.lane(lane), _ok(lane_replies[2 * j]), _groups(lane_replies[2 * j + 1]),
                           k.partition) for j, lane in enumerate(LANES)]
        dead_streams.append(DeadStreamInfo(k.dead, dead, k.partition))
    lag, pending = sum(lane.lag or 0 for lane in lanes), sum(lane.pending for lane in lanes)
    counts = keeping.counts(totals, lag, pending)
    waiting = counts["waiting"]
    counts.update(waiting=0 if paused else waiting, paused=waiting if paused else 0)
    return QueueStatus(partitions[0].queue, paused, counts, lanes, dead_streams, totals["runs_completed"],
                       totals["runs_failed"])


async def _describe_groups(redis: Redis, lanes: list[LaneInfo]) -> None:
    """Fills in each group's consumers and the age of its oldest pending entry."""
    groups = [(lane, group) for lane in lanes for group in lane.groups]
    if not groups:
        return
    async with redis.pipeline(transaction=False) as pipe:
        for lane, group in groups:
            pipe.xinfo_consumers(lane.key, group.name)
            pipe.xpending_range(lane.key, group.name, "-", "+", 1)
        replies = await pipe.execute(raise_on_error=False)
    for (lane, group), consumers, oldest in zip(groups, replies[::2], replies[1::2]):
        # A group deleted since the first round trip reads as empty, not as an error.
        if not _vanished(consumers):
            group.consumers = [ConsumerInfo(c["name"], int(c["pending"]), int(c["idle"])) for c in _ok(consumers)]
        if not _vanished(oldest) and _ok(oldest):
            group.oldest_pending_ms = int(oldest[0]["time_since_delivered"])
