"""The fast path (a queue without job records): wire-format entries, invalid entries,
retries and dead letters without records, crash recovery, batch handlers, pause."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from typing import Any

import orjson
import pytest
from redis.asyncio import Redis

from config import Settings
from streams import InvalidJob, JobContext, JobSpec, JobState, Producer, QueueAdmin, QueueWorker
from streams.context import batch_handler
from streams.fastpath import BatchRunner
from streams.keys import GROUP, QueueKeys
from streams.scripts import QueueScripts, Scripts

Q = "signals"


def lane(settings: Settings, name: str = "normal") -> str:
    return QueueKeys(settings.key_prefix, Q).lane(name)


async def drain(settings: Settings, handler: Any, timeout: float = 30) -> None:
    await asyncio.wait_for(QueueWorker(settings, Q, handler).run(burst=True), timeout)


async def test_entries_written_with_plain_xadd_are_processed(
        engine_redis: Redis, make_settings: Callable[..., Settings]) -> None:
    # What a producer in any language does: one XADD with a JSON `data` field.
    settings = make_settings()
    for n in range(5):
        await engine_redis.xadd(lane(settings), {"data": orjson.dumps({"signalId": f"s{n}"}).decode()})
    await engine_redis.xadd(lane(settings, "high"), {"data": '{"signalId": "urgent"}'})
    seen: list[str] = []

    async def handler(ctx: JobContext) -> None:
        assert ctx.id.startswith("signals-") and ctx.attempt == 1
        seen.append(ctx.data["signalId"])

    await drain(settings, handler)
    assert seen == ["urgent", "s0", "s1", "s2", "s3", "s4"]  # high lane first within the batch
    status = await QueueAdmin(engine_redis, settings).status(Q)
    assert status.pending == 0 and status.dead == 0
    assert (status.counts["completed"], status.counts["failed"], status.counts["waiting"]) == (6, 0, 0)


async def test_invalid_entries_are_dead_lettered_and_the_rest_complete(
        engine_redis: Redis, make_settings: Callable[..., Settings]) -> None:
    settings = make_settings(max_entry_bytes=100)
    key = lane(settings)
    await engine_redis.xadd(key, {"data": '{"n": 1}'})
    await engine_redis.xadd(key, {"data": "{not json"})
    await engine_redis.xadd(key, {"payload": '{"n": 2}'})  # no data field
    await engine_redis.xadd(key, {"data": orjson.dumps({"blob": "x" * 200}).decode()})
    await engine_redis.xadd(key, {"data": '{"n": 3}'})
    seen: list[int] = []

    async def handler(ctx: JobContext) -> None:
        seen.append(ctx.data["n"])

    await drain(settings, handler)
    assert seen == [1, 3]
    letters = await QueueAdmin(engine_redis, settings).dead_letters(Q)
    reasons = sorted(letter.error for letter in letters)
    assert len(letters) == 3 and all(letter.error_type == "InvalidJob" for letter in letters)
    assert any("not valid JSON" in r for r in reasons)
    assert any("no 'data' field" in r for r in reasons)
    assert any("over the limit of 100" in r for r in reasons)
    status = await QueueAdmin(engine_redis, settings).status(Q)
    assert (status.counts["completed"], status.counts["failed"]) == (2, 3)
    assert (status.completed_total, status.failed_total) == (2, 3)
    assert await engine_redis.xpending(key, GROUP) == {"pending": 0, "min": None, "max": None, "consumers": []}


async def test_failures_retry_with_backoff_then_dead_letter_with_the_entry_data(
        engine_redis: Redis, make_settings: Callable[..., Settings]) -> None:
    settings = make_settings(signals={"attempts": 3, "backoff_delay": 0.1})
    await Producer(engine_redis, settings).add_many(Q, [JobSpec({"n": n}) for n in range(4)])
    attempts: dict[int, list[int]] = {}

    async def handler(ctx: JobContext) -> str:
        attempts.setdefault(ctx.data["n"], []).append(ctx.attempt)
        if ctx.data["n"] == 0:
            raise ValueError("never works")
        if ctx.data["n"] == 1 and ctx.attempt < 2:
            raise ValueError("works the second time")
        return "ok"

    await drain(settings, handler)
    assert attempts == {0: [1, 2, 3], 1: [1, 2], 2: [1], 3: [1]}
    admin = QueueAdmin(engine_redis, settings)
    (letter,) = await admin.dead_letters(Q)
    assert (letter.data, letter.error, letter.attempts, letter.error_type) == ({"n": 0}, "never works", 3, "ValueError")
    assert await engine_redis.hlen(QueueKeys(settings.key_prefix, Q).failures) == 0
    assert (await admin.status(Q)).pending == 0

    # A replay publishes the letter's data again as a new entry, hence a new id.
    (new_id,) = await admin.replay(Q)
    assert new_id.startswith("signals-") and new_id != letter.job_id
    replayed: list[Any] = []

    async def succeed(ctx: JobContext) -> None:
        replayed.append(ctx.data)

    await drain(settings, succeed)
    assert replayed == [{"n": 0}] and await admin.dead_letters(Q) == []


async def test_an_entry_over_the_timeout_fails_alone_and_later_entries_get_their_own_time(
        engine_redis: Redis, make_settings: Callable[..., Settings]) -> None:
    # Handlers that wait run side by side, at most `concurrency` at once: the timeout
    # cancels only the entry that overstays, and each entry's time runs from its own start.
    settings = make_settings(signals={"attempts": 1, "timeout": 0.3, "concurrency": 2})
    await Producer(engine_redis, settings).add_many(Q, [JobSpec({"n": n}) for n in range(6)])
    finished: list[int] = []

    async def handler(ctx: JobContext) -> None:
        n = ctx.data["n"]
        await asyncio.sleep({1: 5.0, 2: 0.2, 3: 0.2, 4: 0.2}.get(n, 0))  # 2-4 together outlast one timeout
        finished.append(n)

    started = time.monotonic()
    await drain(settings, handler)
    assert sorted(finished) == [0, 2, 3, 4, 5]
    assert time.monotonic() - started >= 0.4  # 2-4 at most two at a time: two rounds of 0.2 s
    (letter,) = await QueueAdmin(engine_redis, settings).dead_letters(Q)
    assert (letter.data, letter.error_type) == ({"n": 1}, "JobTimeout")
    assert "timeout of 0.3s" in letter.error


async def test_entries_of_a_dead_worker_are_reclaimed_and_poison_is_dead_lettered(
        engine_redis: Redis, make_settings: Callable[..., Settings]) -> None:
    settings = make_settings(signals={"lock_timeout": 0.2, "max_stalls": 1})
    producer = Producer(engine_redis, settings)
    await producer.add_many(Q, [JobSpec({"n": n}) for n in range(3)])
    scripts = QueueScripts(Scripts(engine_redis), settings, Q)
    for key in scripts.keys.lanes:
        await engine_redis.xgroup_create(key, GROUP, id="0", mkstream=True)

    async def never(ctx: JobContext) -> None:
        raise AssertionError("the dead worker never runs anything")

    dead = BatchRunner(settings, scripts, engine_redis, never, "dead-worker")
    assert len(await dead.read(0.01)) == 3  # read, then the process "dies"
    await asyncio.sleep(0.3)
    seen: list[tuple[int, int]] = []

    async def handler(ctx: JobContext) -> None:
        seen.append((ctx.data["n"], ctx.stalls))

    await drain(settings, handler)
    assert sorted(seen) == [(0, 1), (1, 1), (2, 1)]

    # A poison entry: every worker that reads it dies; past max_stalls it is dead-lettered.
    (poison,) = await producer.add_many(Q, [JobSpec({"poison": True})])
    assert len(await dead.read(0.01)) == 1
    await asyncio.sleep(0.3)
    reclaimed = await scripts.reclaim("second-victim", 10)
    assert [d.job_id for d in reclaimed.jobs] == [poison.id]
    await asyncio.sleep(0.3)
    assert (await scripts.reclaim("third", 10)).jobs == []
    (letter,) = await QueueAdmin(engine_redis, settings).dead_letters(Q)
    assert (letter.job_id, letter.error_type, letter.data, letter.stalls) == (poison.id, "Stalled", {"poison": True}, 2)
    assert (await QueueAdmin(engine_redis, settings).status(Q)).failed_total == 1  # counted by reclaim.lua


async def test_batch_handler_gets_the_whole_batch_and_fails_items_alone(
        engine_redis: Redis, make_settings: Callable[..., Settings]) -> None:
    settings = make_settings(signals={"attempts": 1})
    await Producer(engine_redis, settings).add_many(Q, [JobSpec({"n": n}) for n in range(50)])
    batches: list[int] = []

    @batch_handler
    async def handler(jobs: Sequence[JobContext]) -> list[Any]:
        batches.append(len(jobs))
        return [ValueError("odd") if job.data["n"] % 2 else {"ok": True} for job in jobs]

    await drain(settings, handler)
    assert sum(batches) == 50 and batches[0] == 50  # one read, one call
    letters = await QueueAdmin(engine_redis, settings).dead_letters(Q)
    assert sorted(letter.data["n"] for letter in letters) == list(range(1, 50, 2))


async def test_batch_handler_is_refused_on_a_queue_with_records(make_settings: Callable[..., Settings]) -> None:
    @batch_handler
    async def handler(jobs: Sequence[JobContext]) -> list[Any]:
        return []

    with pytest.raises(ValueError, match="records"):
        QueueWorker(make_settings(), "jobs", handler)


async def test_a_paused_fast_queue_starts_nothing(engine_redis: Redis, make_settings: Callable[..., Settings]) -> None:
    settings = make_settings()
    admin = QueueAdmin(engine_redis, settings)
    await admin.pause(Q)
    await Producer(engine_redis, settings).add_many(Q, [JobSpec({"n": 1})])
    seen: list[int] = []

    async def handler(ctx: JobContext) -> None:
        seen.append(ctx.data["n"])

    await drain(settings, handler)
    assert seen == []
    await admin.resume(Q)
    await drain(settings, handler)
    assert seen == [1]


async def test_producer_ids_name_the_entry_and_options_needing_records_are_refused(
        engine_redis: Redis, make_settings: Callable[..., Settings]) -> None:
    settings = make_settings()
    producer = Producer(engine_redis, settings)
    added = await producer.add(Q, {"n": 1}, priority="high")
    entry_id = added.id.removeprefix("signals-")
    assert await engine_redis.xrange(lane(settings, "high"), entry_id, entry_id) == [
        (entry_id, {"data": '{"n":1}'})]
    with pytest.raises(InvalidJob, match="delay"):
        await producer.add(Q, {"n": 2}, delay=5)
    with pytest.raises(InvalidJob, match="idempotency_key"):
        await producer.add(Q, {"n": 2}, idempotency_key="k")
    assert await engine_redis.xlen(lane(settings)) == 0


async def test_a_rate_limit_and_lane_weights_are_honoured_on_the_fast_path(
        engine_redis: Redis, make_settings: Callable[..., Settings]) -> None:
    # 6 entries per 400 ms, read by weights 1:1:0 (the low lane only when the others are empty).
    settings = make_settings(signals={"rate_limit": "6/400ms", "lane_weights": "1:1:0", "batch_size": 100})
    k = QueueKeys(settings.key_prefix, Q)
    for lane in ("low", "high", "normal"):
        for n in range(6):
            await engine_redis.xadd(k.lane(lane), {"data": orjson.dumps({"lane": lane, "n": n}).decode()})
    batches: list[list[str]] = []

    @batch_handler
    async def record(jobs: Sequence[JobContext]) -> list[None]:
        batches.append([ctx.data["lane"] for ctx in jobs])
        return [None] * len(jobs)

    started = time.monotonic()
    await asyncio.wait_for(QueueWorker(settings, Q, record).run(burst=True), 30)
    assert time.monotonic() - started >= 0.8  # 18 entries at 6 per 400 ms: two windows waited out
    assert all(len(batch) <= 6 for batch in batches) and sum(map(len, batches)) == 18
    assert sorted(batches[0]) == ["high"] * 3 + ["normal"] * 3  # the weighted share, not strict priority
    assert batches[-1] == ["low"] * 6


async def test_handlers_that_wait_run_side_by_side_up_to_the_concurrency(
        engine_redis: Redis, make_settings: Callable[..., Settings]) -> None:
    settings = make_settings(signals={"concurrency": 3})
    await Producer(engine_redis, settings).add_many(Q, [JobSpec({"n": n}) for n in range(10)])
    running, most = 0, 0

    async def handler(ctx: JobContext) -> int:
        nonlocal running, most
        if ctx.data["n"] % 2:  # odd ones return at once, never waiting
            return ctx.data["n"]
        running += 1
        most = max(most, running)
        await asyncio.sleep(0.05)
        running -= 1
        return ctx.data["n"]

    await drain(settings, handler)
    assert most == 3
    jobs = await QueueAdmin(engine_redis, settings).jobs(Q, JobState.COMPLETED, 20)
    assert sorted(job.returnvalue for job in jobs) == list(range(10))
