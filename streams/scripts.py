"""The Lua scripts under ``streams/lua``, loaded once, called through typed methods
(what a read hands over is in streams.delivery).

`QueueScripts` is the only code that knows each script's KEYS and ARGV order; callers
pass Python values. redis-py's Script reloads a script on NOSCRIPT (after a restart or
failover) and retries, so callers never see that error.
"""

from __future__ import annotations

import re
from functools import cache
from importlib import resources
from typing import Any, Literal

import orjson
from redis.asyncio import Redis
from redis.commands.core import AsyncScript

from config import QueuePolicy, Settings
from streams.delivery import Delivery, ReadResult, ReclaimPage
from streams.keys import GROUP, LANES, Lane, QueueKeys
from streams.replication import ReplicaWait

_INCLUDE = re.compile(r"^--!include (\S+)$", re.MULTILINE)
SCRIPT_NAMES = ("add", "read", "reclaim", "complete", "fail", "extend", "trim", "remove", "retry", "clean",
                "reap", "read_entries", "settle_entries", "fail_entry", "describe_entry", "remove_entry", "replay_entry",
                "clean_kept", "requeue_lost")
SCHEDULED_MOVES_PER_READ = 100
RUN_MARK_TTL_S = 600  # how long a stream-kept run's failure outcome is kept for a re-sent call
RECLAIM_PAGE = 100
REQUEUE_PAGE = 200


@cache
def script_source(name: str, package: str = "streams") -> str:
    """The text of `<package>/lua/<name>.lua` (the engine's, or a processor's) with its
    ``--!include`` lines replaced by the named files of the engine's own folder, so
    every script shares `_common.lua`."""
    shared = resources.files("streams") / "lua"
    text = (resources.files(package) / "lua" / f"{name}.lua").read_text()
    return _INCLUDE.sub(lambda m: (shared / m.group(1)).read_text(), text)


class Scripts:
    """The registered scripts of one Redis client."""

    def __init__(self, redis: Redis) -> None:
        self.redis = redis
        self._scripts = {name: redis.register_script(script_source(name)) for name in SCRIPT_NAMES}

    async def load(self) -> None:
        """Loads every script now, so a syntax error fails start-up, not the first job."""
        for script in self._scripts.values():
            await self.redis.script_load(script.script)

    def __getitem__(self, name: str) -> AsyncScript:
        return self._scripts[name]


def _ms(seconds: float) -> int:
    return max(int(seconds * 1000), 0)


def _rate(policy: QueuePolicy) -> tuple[int, int]:
    limit = policy.rate_limit
    return (limit.max, _ms(limit.per)) if limit else (0, 0)


class QueueScripts:
    """Typed calls of every script for one queue (one partition of it, when it has several)."""

    def __init__(self, scripts: Scripts, settings: Settings, queue: str, partition: int = 0) -> None:
        self.scripts = scripts
        self.settings = settings
        self.queue = queue
        self.keys = QueueKeys(settings.key_prefix, queue, partition, settings.policy(queue).partitions)
        self.wait = ReplicaWait(scripts.redis, settings)

    async def _write(self, name: str, keys: list[str], args: list[Any]) -> Any:
        """A script whose outcome someone is told about: it waits for the replicas
        REDIS_WAIT_REPLICAS asks for (streams.replication)."""
        script = self.scripts[name]
        if not self.wait.enabled:
            return await script(keys, args)
        return await self.wait.call_script(script.sha, script.script, keys, args)

    @property
    def policy(self) -> QueuePolicy:
        return self.settings.policy(self.queue)

    async def add(self, jobs: list[tuple[str, str, str, Lane, float, str]],
                  traceparent: str = "") -> list[tuple[str, bool]]:
        """jobs: (id, name, data JSON, lane, delay seconds, idempotency digest or '');
        `traceparent`: the adding span's trace context, kept in each record ('' = none)."""
        k, policy = self.keys, self.policy
        encoded = orjson.dumps([(job_id, name, data, LANES.index(lane) + 1, _ms(delay), digest)
                                for job_id, name, data, lane, delay, digest in jobs])
        args = [self.queue, policy.attempts, policy.max_stalls, _ms(self.settings.idempotency_window),
                self.settings.events_max_len, encoded, traceparent]
        keys = [*k.lanes, k.state_index("waiting"), k.scheduled, k.events, k.job_prefix,
                k.idempotency_prefix]
        reply = await self._write("add", keys, args)
        return [(job_id, bool(int(added))) for job_id, added in reply]

    async def read(self, consumer: str, want: int) -> ReadResult:
        k, policy = self.keys, self.policy
        rate_max, rate_window = _rate(policy)
        weights = ",".join(map(str, policy.lane_weights)) if policy.lane_weights else ""
        keys = [*k.lanes, k.meta, k.limiter, k.scheduled, k.state_index("waiting"),
                k.state_index("active"), k.events, k.inflight, k.job_prefix, k.dead]
        args = [GROUP, consumer, want, weights, rate_max, rate_window,
                self.settings.events_max_len, SCHEDULED_MOVES_PER_READ, self.settings.dead_letter_max_len,
                self.queue]
        reply = await self.scripts["read"](keys, args)
        kind = reply[0]
        if kind == "jobs":
            return ReadResult("jobs", [Delivery.from_reply(row) for row in reply[1]])
        if kind == "limited":
            return ReadResult("limited", [], int(reply[1]))
        if kind == "empty":
            return ReadResult("empty", [], int(reply[1]), tuple(reply[2]))
        return ReadResult("paused", [])

    async def reclaim(self, consumer: str, want: int, lane: int = 1, cursor: str = "-") -> ReclaimPage:
        """One page of the walk; call again with the returned lane and cursor until the
        returned lane is 0."""
        k, policy = self.keys, self.policy
        rate_max, rate_window = _rate(policy)
        min_idle = min(policy.lock_timeout, policy.backoff_for(1))
        keys = [*k.lanes, k.meta, k.limiter, k.state_index("active"), k.state_index("retrying"),
                k.state_index("failed"), k.dead, k.events, k.inflight, k.job_prefix, k.logs_prefix,
                k.failures, k.kept("failed")]
        args = [GROUP, consumer, want, lane, cursor, RECLAIM_PAGE, _ms(policy.lock_timeout),
                _ms(min_idle), rate_max, rate_window, self.settings.events_max_len,
                self.settings.dead_letter_max_len, policy.keep_failed, self.queue, policy.max_stalls,
                k.entry_job_prefix]
        next_lane, next_cursor, rows, settled = await self.scripts["reclaim"](keys, args)
        return ReclaimPage(int(next_lane), next_cursor, [Delivery.from_reply(row) for row in rows],
                           int(settled))

    async def complete(self, consumer: str, runs: list[tuple[Delivery, str]]) -> list[bool]:
        """runs: (delivery, return value as JSON). True where the outcome was recorded (by
        this call, or by the same call sent before its reply was lost)."""
        k = self.keys
        keys = [*k.lanes, k.state_index("active"), k.state_index("completed"), k.events,
                k.inflight, k.job_prefix, k.logs_prefix, k.meta]
        encoded = orjson.dumps([(d.lane, d.entry_id, d.delivery, d.job_id, value, d.run) for d, value in runs])
        args = [GROUP, consumer, self.policy.keep_completed, self.settings.events_max_len, encoded]
        return [bool(int(x)) for x in await self._write("complete", keys, args)]

    async def fail(self, consumer: str, d: Delivery, error: BaseException, stack: str,
                   backoff: float, unrecoverable: bool) -> Literal["retry", "dead", "lost"]:
        k, policy = self.keys, self.policy
        keys = [k.lanes[d.lane - 1], k.state_index("active"), k.state_index("retrying"),
                k.state_index("failed"), k.dead, k.events, k.inflight, k.job_prefix,
                k.logs_prefix, k.meta]
        message = str(error) or type(error).__name__
        args = [GROUP, consumer, d.lane, d.entry_id, d.delivery, d.job_id, message,
                type(error).__name__, stack, _ms(backoff), "1" if unrecoverable else "0",
                policy.keep_failed, self.settings.events_max_len,
                self.settings.dead_letter_max_len, self.queue, d.run]
        return await self._write("fail", keys, args)

    async def fail_entry(self, consumer: str, d: Delivery, raw_data: str, error: BaseException,
                         backoff: float, unrecoverable: bool) -> Literal["retry", "dead", "lost"]:
        """fail() for a stream-kept job: the entry has no record, so its data travels along."""
        k, policy = self.keys, self.policy
        keys = [k.lanes[d.lane - 1], k.failures, k.dead, k.events, k.meta, k.kept("failed"), k.run_mark(d.run)]
        args = [GROUP, consumer, d.lane, LANES[d.lane - 1], d.entry_id, d.delivery, d.job_id, raw_data,
                str(error) or type(error).__name__, type(error).__name__, d.attempts_made, d.stalls,
                _ms(backoff), "1" if unrecoverable else "0", policy.attempts,
                self.settings.dead_letter_max_len, self.settings.events_max_len, self.queue, policy.keep_failed,
                RUN_MARK_TTL_S * 1000]
        return await self._write("fail_entry", keys, args)

    async def read_entries(self, consumer: str, want: int) -> ReadResult:
        """read() for stream-kept jobs on a queue with a rate limit or lane weights."""
        k, policy = self.keys, self.policy
        rate_max, rate_window = _rate(policy)
        weights = ",".join(map(str, policy.lane_weights)) if policy.lane_weights else ""
        reply = await self.scripts["read_entries"]([*k.lanes, k.meta, k.limiter],
                                                   [GROUP, consumer, want, weights, rate_max, rate_window])
        kind, prefix = reply[0], k.entry_job_prefix
        if kind == "entries":
            return ReadResult("jobs", [Delivery(int(lane), entry_id, prefix + entry_id, data or None, 0, 0, 1,
                                                traceparent or None, invalid)
                                       for lane, entry_id, data, traceparent, invalid in reply[1]])
        if kind == "limited":
            return ReadResult("limited", [], int(reply[1]))
        if kind == "empty":
            return ReadResult("empty", [], -1, tuple(reply[1]))
        return ReadResult("paused", [])

    async def settle_entries(self, acked: list[list[str]], cleared: list[str],
                             kept: list[tuple[int, str, str, str, int, int, int]]) -> int:
        """Records the successes of stream-kept jobs. acked: the batch's entry ids per lane;
        cleared: failures-hash fields to clear; kept: the completions to keep, oldest
        first, (lane, job id, data, return value JSON, attemptsMade, stalls, run ms).
        Returns how many entries this call acked."""
        k = self.keys
        keys = [*k.lanes, k.failures, k.meta, k.events, k.kept("completed")]
        args = [GROUP, self.policy.keep_completed, self.settings.events_max_len,
                orjson.dumps(acked), orjson.dumps(cleared), orjson.dumps(kept)]
        return int(await self._write("settle_entries", keys, args))

    async def describe_entry(self, entry_id: str, job_id: str) -> tuple[bool, dict[str, str] | None]:
        """A stream-kept job's fields as a record would hold them (None: not found), and
        the queue's pause flag."""
        k = self.keys
        keys = [*k.lanes, k.failures, k.kept("completed"), k.kept("failed"), k.meta]
        paused, fields = await self.scripts["describe_entry"](keys, [GROUP, entry_id, job_id])
        record = dict(zip(fields[::2], fields[1::2])) if fields else None
        return paused == "1", record

    async def remove_entry(self, entry_id: str, job_id: str) -> int:
        k = self.keys
        keys = [*k.lanes, k.failures, k.kept("completed"), k.kept("failed"), k.events]
        return int(await self._write("remove_entry", keys, [GROUP, entry_id, job_id,
                                                             self.settings.events_max_len]))

    async def replay_entry(self, job_id: str, dead_entry: str = "") -> str | None:
        """Queues a failed stream-kept job again from its dead letter or its kept failure;
        returns its new job id, or None when there was nothing to queue."""
        k = self.keys
        keys = [*k.lanes, k.dead, k.events, k.kept("failed")]
        entry = await self._write("replay_entry", keys, [dead_entry, job_id, self.settings.events_max_len,
                                                          k.entry_job_prefix])
        return k.entry_job_prefix + entry if entry else None

    async def clean_kept(self, state: Literal["completed", "failed"], grace: float, limit: int) -> list[str]:
        return await self._write("clean_kept", [self.keys.kept(state)], [_ms(grace), limit])

    async def extend(self, consumer: str, deliveries: list[Delivery]) -> list[bool]:
        """Extends leases; False where the entry is no longer this run's (taken over, or
        its outcome recorded already)."""
        k, recorded = self.keys, self.policy.records
        args: list[Any] = [GROUP, consumer, len(deliveries)]
        for d in deliveries:
            args += [d.lane, d.entry_id, d.delivery, d.job_id if recorded else "", d.run]
        return [bool(int(x)) for x in await self.scripts["extend"]([*k.lanes, k.job_prefix, k.run_mark_prefix],
                                                                   args)]

    async def requeue_lost(self, cursor: str = "0") -> tuple[str, list[str], list[str]]:
        """One page of the walk over waiting jobs: (next cursor, '0' when done; ids queued
        again because no worker would read their entry; ids dead-lettered as RecordMissing)."""
        k = self.keys
        keys = [*k.lanes, k.state_index("waiting"), k.events, k.job_prefix, k.dead, k.meta]
        args = [GROUP, cursor, REQUEUE_PAGE, self.settings.events_max_len, self.settings.dead_letter_max_len,
                self.queue]
        next_cursor, requeued, buried = await self.scripts["requeue_lost"](keys, args)
        return next_cursor, requeued, buried

    async def trim(self, lane: int) -> int:
        return int(await self.scripts["trim"]([self.keys.lanes[lane - 1]], []))

    async def reap(self, lane: int, idle: float) -> list[str]:
        return await self.scripts["reap"]([self.keys.lanes[lane - 1]], [GROUP, _ms(idle)])

    async def remove(self, job_id: str) -> int:
        k = self.keys
        keys = [*k.lanes, k.scheduled, k.events, k.inflight, k.job_prefix, k.logs_prefix,
                *(k.state_index(s) for s in ("waiting", "active", "retrying", "completed", "failed"))]
        return int(await self._write("remove", keys, [GROUP, job_id, self.settings.events_max_len]))

    async def retry(self, job_id: str, dead_entry: str = "") -> int:
        k, policy = self.keys, self.policy
        keys = [*k.lanes, k.state_index("waiting"), k.state_index("failed"), k.dead, k.events,
                k.job_prefix]
        args = [job_id, dead_entry, self.settings.events_max_len, self.queue, policy.attempts,
                policy.max_stalls]
        return int(await self._write("retry", keys, args))

    async def clean(self, state: Literal["completed", "failed"], grace: float, limit: int) -> list[str]:
        k = self.keys
        return await self._write("clean", [k.state_index(state), k.job_prefix, k.logs_prefix],
                                           [_ms(grace), limit])
