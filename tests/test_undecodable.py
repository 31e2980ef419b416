"""Entries that do not decode or parse (issue 13, finding 2): each is dead-lettered alone
with its reason and the rest of its batch runs, on the fast path (plain read, the
scripted read of a rate-limited queue, the reclaim of a dead worker's batch) and on a
queue with job records (an entry naming no job). Entries are written with raw XADDs,
as any producer could."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import orjson
import pytest
from redis.asyncio import Redis

from config import Settings
from streams import JobContext, Producer, QueueAdmin, QueueWorker
from streams.keys import GROUP, QueueKeys
from streams.scripts import QueueScripts, Scripts

BAD = b'{"signalId": "s\xff\xfe"}'  # not UTF-8: a decoding read of the batch raised on it


async def write_batch(redis: Redis, lane: str) -> None:
    for n in range(3):
        await redis.xadd(lane, {b"data": orjson.dumps({"signalId": f"ok{n}"})})
        if n == 1:
            await redis.xadd(lane, {b"data": BAD})
            await redis.xadd(lane, {b"\xc3(": b"\xff", b"data": orjson.dumps({"signalId": "odd-field"})})


async def drain(settings: Settings, queue: str, seen: list[Any]) -> None:
    async def handler(ctx: JobContext) -> None:
        seen.append(ctx.data["signalId"] if isinstance(ctx.data, dict) and "signalId" in ctx.data else ctx.data)

    await asyncio.wait_for(QueueWorker(settings, queue, handler).run(burst=True), 20)


async def assert_one_letter(redis: Redis, settings: Settings, queue: str) -> None:
    admin = QueueAdmin(redis, settings)
    (letter,) = await admin.dead_letters(queue)  # readable by a decoding client
    assert letter.error_type == "InvalidJob"
    assert letter.error == "entry data is not valid UTF-8 (byte 0xff at offset 15)"
    assert letter.data == '{"signalId": "s\\xff\\xfe"}'  # escaped, so any reader can decode it
    status = await admin.status(queue)
    assert (status.counts["completed"], status.failed_total, status.pending) == (4, 1, 0)


@pytest.mark.parametrize("policy", [{}, {"rate_limit": "100/1s"}], ids=["plain read", "scripted read"])
async def test_an_undecodable_entry_is_dead_lettered_alone_on_the_fast_path(
        redis: Redis, engine_redis: Redis, make_settings: Callable[..., Settings], policy: dict[str, Any]) -> None:
    settings = make_settings(signals={"attempts": 3, **policy})
    await write_batch(redis, QueueKeys(settings.key_prefix, "signals").lane("normal"))
    seen: list[Any] = []
    await drain(settings, "signals", seen)
    assert seen == ["ok0", "ok1", "odd-field", "ok2"]  # an undecodable field name nobody reads is no harm
    await assert_one_letter(engine_redis, settings, "signals")


async def test_an_undecodable_entry_of_a_dead_workers_batch_is_dead_lettered_at_reclaim(
        redis: Redis, engine_redis: Redis, make_settings: Callable[..., Settings]) -> None:
    settings = make_settings(signals={"lock_timeout": 0.2})
    scripts = QueueScripts(Scripts(engine_redis), settings, "signals")
    for key in scripts.keys.lanes:
        await engine_redis.xgroup_create(key, GROUP, id="0", mkstream=True)
    await write_batch(redis, scripts.keys.lane("normal"))
    # A worker reads the batch raw, then dies before running it.
    await redis.xreadgroup(GROUP, "dead-worker", {scripts.keys.lane("normal"): ">"})
    await asyncio.sleep(0.3)
    seen: list[Any] = []
    await drain(settings, "signals", seen)
    assert sorted(seen) == ["odd-field", "ok0", "ok1", "ok2"]
    await assert_one_letter(engine_redis, settings, "signals")


async def test_an_entry_naming_no_job_is_dead_lettered_alone_on_a_queue_with_records(
        redis: Redis, engine_redis: Redis, make_settings: Callable[..., Settings]) -> None:
    settings = make_settings()
    producer = Producer(engine_redis, settings)
    lane = QueueKeys(settings.key_prefix, "jobs").lane("normal")
    await producer.add("jobs", {"signalId": "before"})
    await redis.xadd(lane, {b"job": b"jobs-\xff"})
    await redis.xadd(lane, {b"data": b"{}"})
    await producer.add("jobs", {"signalId": "after"})
    seen: list[Any] = []
    await drain(settings, "jobs", seen)
    assert seen == ["before", "after"]
    letters = await QueueAdmin(engine_redis, settings).dead_letters("jobs")
    assert [(letter.job_id, letter.error_type) for letter in letters] == [("", "InvalidJob")] * 2
    assert all("has no valid 'job' field" in letter.error for letter in letters)
    status = await QueueAdmin(engine_redis, settings).status("jobs")
    assert (status.counts["completed"], status.failed_total, status.pending) == (2, 2, 0)
