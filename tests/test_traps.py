"""The traps of Redis Streams queues (see the engine issue), each driven through the
scripts directly so the interleaving is exact rather than left to timing."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest
from redis.asyncio import Redis

from config import Settings
from streams import JobContext, JobSpec, Producer, QueueAdmin, QueueWorker
from streams.keys import GROUP, QueueKeys
from streams.delivery import Delivery
from streams.scripts import QueueScripts, Scripts

Q = "jobs"


async def eventually(predicate: Callable[[], Any], timeout: float = 10.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not await predicate():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.02)


async def setup(client: Redis, settings: Settings) -> QueueScripts:
    scripts = QueueScripts(Scripts(client), settings, Q)
    for lane in scripts.keys.lanes:
        await client.xgroup_create(lane, GROUP, id="0", mkstream=True)
    return scripts


async def reclaim_all(scripts: QueueScripts, consumer: str, want: int) -> list[Delivery]:
    claimed: list[Delivery] = []
    lane, cursor = 1, "-"
    while lane:
        page = await scripts.reclaim(consumer, want - len(claimed), lane, cursor)
        claimed += page.jobs
        lane, cursor = page.lane, page.cursor
    return claimed


async def test_backoff_never_steals_a_running_job(engine_redis: Redis, make_settings: Callable[..., Settings]) -> None:
    # A 0.05 s backoff with a 5 s lease: the running job's entry is idle far longer than
    # the backoff, but its record says active, so reclaim leaves it alone.
    settings = make_settings(jobs={"backoff_delay": 0.05, "lock_timeout": 5})
    scripts = await setup(engine_redis, settings)
    await Producer(engine_redis, settings).add(Q, {"n": 1})
    (running,) = (await scripts.read("alive", 1)).jobs
    await asyncio.sleep(0.3)
    assert await reclaim_all(scripts, "thief", 10) == []
    assert await scripts.complete("alive", [(running, "1")]) == [True]


async def test_failed_job_is_reclaimed_after_its_backoff_not_before(
        engine_redis: Redis, make_settings: Callable[..., Settings]) -> None:
    settings = make_settings(jobs={"backoff_delay": 0.4, "lock_timeout": 30})
    scripts = await setup(engine_redis, settings)
    await Producer(engine_redis, settings).add(Q, {"n": 1})
    (d,) = (await scripts.read("a", 1)).jobs
    assert await scripts.fail("a", d, RuntimeError("boom"), "", 0.4, False) == "retry"
    assert await reclaim_all(scripts, "b", 10) == []
    await asyncio.sleep(0.5)
    (again,) = await reclaim_all(scripts, "b", 10)
    assert (again.job_id, again.attempts_made, again.stalls, again.delivery) == (d.job_id, 1, 0, 2)


async def test_deleted_pending_entry_is_dead_lettered_not_left_active(
        engine_redis: Redis, make_settings: Callable[..., Settings]) -> None:
    settings = make_settings(jobs={"backoff_delay": 0.01})
    scripts = await setup(engine_redis, settings)
    job = await Producer(engine_redis, settings).add(Q, {"n": 1})
    (d,) = (await scripts.read("a", 1)).jobs
    await scripts.fail("a", d, RuntimeError("boom"), "", 0.01, False)
    await engine_redis.xdel(scripts.keys.lanes[d.lane - 1], d.entry_id)  # e.g. a blind XTRIM
    await asyncio.sleep(0.05)
    assert await reclaim_all(scripts, "b", 10) == []
    record = await QueueAdmin(engine_redis, settings).job(job.id)
    assert record.state == "failed"
    (letter,) = await QueueAdmin(engine_redis, settings).dead_letters(Q)
    assert letter.job_id == job.id and letter.error_type == "EntryDeleted"
    assert await engine_redis.xpending(scripts.keys.lanes[d.lane - 1], GROUP) == {
        "pending": 0, "min": None, "max": None, "consumers": []}


async def test_completion_is_fenced_against_a_stale_owner(
        engine_redis: Redis, make_settings: Callable[..., Settings]) -> None:
    settings = make_settings(jobs={"lock_timeout": 0.2})
    scripts = await setup(engine_redis, settings)
    job = await Producer(engine_redis, settings).add(Q, {"n": 1})
    (stale,) = (await scripts.read("frozen", 1)).jobs
    await asyncio.sleep(0.3)  # "frozen" misses its lease
    (fresh,) = await reclaim_all(scripts, "healthy", 1)
    assert await scripts.complete("healthy", [(fresh, '"new owner"')]) == [True]
    # The frozen worker wakes up and tries to record its outcome: both are refused.
    assert await scripts.complete("frozen", [(stale, '"stale"')]) == [False]
    assert await scripts.fail("frozen", stale, RuntimeError("late"), "", 0, False) == "lost"
    assert await scripts.extend("frozen", [stale]) == [False]
    record = await QueueAdmin(engine_redis, settings).job(job.id)
    assert record.state == "completed" and record.returnvalue == "new owner"
    assert record.stalls == 1 and record.attemptsMade == 1


async def test_same_consumer_reclaiming_its_own_entry_fences_the_old_run(
        engine_redis: Redis, make_settings: Callable[..., Settings]) -> None:
    # Owner alone is not enough: the delivery count tells the old run from the new.
    settings = make_settings(jobs={"lock_timeout": 0.2})
    scripts = await setup(engine_redis, settings)
    await Producer(engine_redis, settings).add(Q, {"n": 1})
    (old,) = (await scripts.read("w", 1)).jobs
    await asyncio.sleep(0.3)
    (new,) = await reclaim_all(scripts, "w", 1)
    assert await scripts.complete("w", [(old, "1")]) == [False]
    assert await scripts.complete("w", [(new, "2")]) == [True]


async def test_crash_redeliveries_use_their_own_budget(
        engine_redis: Redis, make_settings: Callable[..., Settings]) -> None:
    # attempts=2, max_stalls=3: three crashes and one handler failure still leave the
    # job a chance; it completes with attemptsMade 2 (one failure, one success).
    settings = make_settings(jobs={"attempts": 2, "max_stalls": 3, "lock_timeout": 0.1,
                                      "backoff_delay": 0})
    scripts = await setup(engine_redis, settings)
    job = await Producer(engine_redis, settings).add(Q, {"n": 1})
    (d,) = (await scripts.read("w0", 1)).jobs
    assert await scripts.fail("w0", d, RuntimeError("once"), "", 0, False) == "retry"
    (d,) = await reclaim_all(scripts, "w1", 1)
    for crash in range(1, 4):
        await asyncio.sleep(0.15)  # the worker holding it "dies"
        (d,) = await reclaim_all(scripts, f"w{crash + 1}", 1)
        assert d.stalls == crash and d.attempts_made == 1
    assert await scripts.complete("w4", [(d, "1")]) == [True]
    record = await QueueAdmin(engine_redis, settings).job(job.id)
    assert (record.state, record.attemptsMade, record.stalls) == ("completed", 2, 3)


async def test_a_job_that_crashes_every_worker_is_dead_lettered(
        engine_redis: Redis, make_settings: Callable[..., Settings]) -> None:
    settings = make_settings(jobs={"max_stalls": 2, "lock_timeout": 0.1})
    scripts = await setup(engine_redis, settings)
    job = await Producer(engine_redis, settings).add(Q, {"n": 1})
    await scripts.read("w0", 1)
    for crash in (1, 2):
        await asyncio.sleep(0.15)
        assert len(await reclaim_all(scripts, f"w{crash}", 1)) == 1
    await asyncio.sleep(0.15)
    assert await reclaim_all(scripts, "w3", 1) == []  # third crash: over budget
    admin = QueueAdmin(engine_redis, settings)
    record = await admin.job(job.id)
    assert (record.state, record.attemptsMade, record.stalls) == ("failed", 0, 3)
    (letter,) = await admin.dead_letters(Q)
    assert letter.error_type == "Stalled" and letter.job_id == job.id
    assert (await QueueAdmin(engine_redis, settings).status(Q)).failed_total == 1


async def test_reclaim_walks_the_whole_pending_list(
        engine_redis: Redis, make_settings: Callable[..., Settings]) -> None:
    # 350 entries of a dead worker: more than three pages of the walk.
    settings = make_settings(jobs={"lock_timeout": 0.1, "concurrency": 400})
    scripts = await setup(engine_redis, settings)
    await Producer(engine_redis, settings).add_many(Q, [JobSpec({"n": i}) for i in range(350)])
    assert len((await scripts.read("dead", 400)).jobs) == 350
    await asyncio.sleep(0.2)
    handled: list[str] = []

    async def handler(ctx: JobContext) -> None:
        handled.append(ctx.id)

    worker = QueueWorker(settings, Q, handler, consumer="rescuer")
    await worker._maintain()  # one reclaim cycle
    await eventually(lambda: _true(len(handled) == 350))
    await worker.redis.aclose()


async def _true(value: bool) -> bool:
    return value


async def test_lease_extension_keeps_a_long_job_from_being_reclaimed(
        engine_redis: Redis, make_settings: Callable[..., Settings]) -> None:
    # The job runs 4x its lease; a second worker reclaims constantly, yet it runs once.
    settings = make_settings(jobs={"lock_timeout": 0.3, "concurrency": 2})
    await Producer(engine_redis, settings).add(Q, {"n": 1})
    runs: list[str] = []

    async def slow(ctx: JobContext) -> None:
        runs.append(ctx.id)
        await asyncio.sleep(1.2)

    first = QueueWorker(settings, Q, slow, redis=engine_redis, consumer="first")
    second = QueueWorker(settings, Q, slow, redis=engine_redis, consumer="second")
    await asyncio.wait_for(asyncio.gather(first.run(burst=True), second.run(burst=True)), 20)
    assert len(runs) == 1
    status = await QueueAdmin(engine_redis, settings).status(Q)
    assert status.counts["completed"] == 1


async def test_trimming_keeps_every_unacked_entry(
        engine_redis: Redis, make_settings: Callable[..., Settings]) -> None:
    settings = make_settings(jobs={"concurrency": 200, "backoff_delay": 3600, "attempts": 2,
                                      "keep_completed": 5000})
    await Producer(engine_redis, settings).add_many(Q, [JobSpec({"n": i}) for i in range(3000)])

    async def handler(ctx: JobContext) -> None:
        if ctx.data["n"] >= 2700:
            raise RuntimeError("kept pending for an hour")

    worker = QueueWorker(settings, Q, handler)  # its own pool, sized for its concurrency
    task = asyncio.create_task(worker.run())
    admin = QueueAdmin(engine_redis, settings)
    await eventually(lambda: _done(admin, 2700), timeout=60)
    await worker.scripts.trim(2)
    worker.stop()
    await task
    lane = QueueKeys(settings.key_prefix, Q).lane("normal")
    pending = await engine_redis.xpending_range(lane, GROUP, "-", "+", 10_000)
    assert len(pending) == 300
    for p in pending:
        assert await engine_redis.xrange(lane, p["message_id"], p["message_id"]), "a pending entry was trimmed"
    # Everything older than the oldest pending entry was acked, and is trimmed.
    assert await engine_redis.xlen(lane) == 300


async def _done(admin: QueueAdmin, completed: int) -> bool:
    status = await admin.status(Q)
    return status.counts["completed"] >= completed and status.counts["delayed"] == 300


async def test_trim_respects_every_group(engine_redis: Redis, make_settings: Callable[..., Settings]) -> None:
    # A second group (e.g. an analytics reader) that has read nothing pins the stream.
    settings = make_settings()
    scripts = await setup(engine_redis, settings)
    lane = scripts.keys.lane("normal")
    await Producer(engine_redis, settings).add_many(Q, [JobSpec({"n": i}) for i in range(10)])
    await engine_redis.xgroup_create(lane, "analytics", id="0")
    deliveries = (await scripts.read("w", 10)).jobs
    await scripts.complete("w", [(d, "1") for d in deliveries])
    assert await scripts.trim(2) == 0
    await engine_redis.xreadgroup("analytics", "a", {lane: ">"}, count=4)
    assert await scripts.trim(2) == 0  # read but not acked
    entries = await engine_redis.xrange(lane, count=4)
    await engine_redis.xack(lane, "analytics", *[e[0] for e in entries])
    assert await scripts.trim(2) == 4
    assert await engine_redis.xlen(lane) == 6


async def test_consumers_are_reaped_only_when_they_hold_nothing(
        engine_redis: Redis, make_settings: Callable[..., Settings]) -> None:
    settings = make_settings()
    scripts = await setup(engine_redis, settings)
    await Producer(engine_redis, settings).add_many(Q, [JobSpec({"n": 1}), JobSpec({"n": 2})])
    (held,) = (await scripts.read("holder", 1)).jobs
    (done,) = (await scripts.read("finished", 1)).jobs
    await scripts.complete("finished", [(done, "1")])
    await asyncio.sleep(0.05)
    assert await scripts.reap(2, 0.01) == ["finished"]
    consumers = await engine_redis.xinfo_consumers(scripts.keys.lane("normal"), GROUP)
    assert [c["name"] for c in consumers] == ["holder"]
    assert await scripts.complete("holder", [(held, "1")]) == [True]


async def test_worker_recreates_a_vanished_group(engine_redis: Redis, make_settings: Callable[..., Settings]) -> None:
    settings = make_settings()
    handled: list[int] = []

    async def handler(ctx: JobContext) -> None:
        handled.append(ctx.data["n"])

    worker = QueueWorker(settings, Q, handler, redis=engine_redis)
    task = asyncio.create_task(worker.run())
    producer = Producer(engine_redis, settings)
    await producer.add(Q, {"n": 1})
    await eventually(lambda: _true(handled == [1]))
    await engine_redis.delete(*QueueKeys(settings.key_prefix, Q).lanes)  # e.g. a FLUSHALL
    await producer.add(Q, {"n": 2})
    await eventually(lambda: _true(handled == [1, 2]))
    worker.stop()
    await task


@pytest.mark.parametrize("policy, expected", [
    ({"backoff": "exponential", "backoff_delay": 0.2, "attempts": 4}, [0.2, 0.4, 0.8]),
    ({"backoff": "fixed", "backoff_delay": 0.3, "attempts": 3}, [0.3, 0.3]),
])
async def test_retry_delays_follow_the_policy_and_dead_letters_hold_exactly_the_failures(
        engine_redis: Redis, make_settings: Callable[..., Settings], policy: dict[str, Any],
        expected: list[float]) -> None:
    settings = make_settings(jobs={**policy, "lock_timeout": 30})
    producer = Producer(engine_redis, settings)
    doomed = [(await producer.add(Q, {"fail": True, "n": i})).id for i in range(3)]
    fine = [(await producer.add(Q, {"fail": False, "n": i})).id for i in range(3)]
    starts: dict[str, list[float]] = {}
    loop = asyncio.get_running_loop()

    async def handler(ctx: JobContext) -> str:
        starts.setdefault(ctx.id, []).append(loop.time())
        if ctx.data["fail"]:
            raise ValueError(f"bad input {ctx.data['n']}")
        return "ok"

    await asyncio.wait_for(QueueWorker(settings, Q, handler, redis=engine_redis).run(burst=True), 30)
    for job_id in doomed:
        times = starts[job_id]
        assert len(times) == policy["attempts"]
        gaps = [b - a for a, b in zip(times, times[1:])]
        for gap, want in zip(gaps, expected):
            assert want * 0.9 <= gap <= want + 1.0, (gaps, expected)
    admin = QueueAdmin(engine_redis, settings)
    letters = await admin.dead_letters(Q)
    assert sorted(d.job_id for d in letters) == sorted(doomed)
    assert all(d.attempts == policy["attempts"] and d.error_type == "ValueError" for d in letters)
    for job_id in fine:
        assert (await admin.job(job_id)).state == "completed"


async def test_timeout_fails_the_attempt(engine_redis: Redis, make_settings: Callable[..., Settings]) -> None:
    settings = make_settings(jobs={"timeout": 0.2, "attempts": 2, "backoff_delay": 0})
    job = await Producer(engine_redis, settings).add(Q, {})
    calls = 0

    async def handler(ctx: JobContext) -> None:
        nonlocal calls
        calls += 1
        await asyncio.sleep(10)

    await asyncio.wait_for(QueueWorker(settings, Q, handler, redis=engine_redis).run(burst=True), 20)
    record = await QueueAdmin(engine_redis, settings).job(job.id)
    assert calls == 2
    assert record.state == "failed" and record.errorType == "JobTimeout"
    assert "timeout of 0.2s" in (record.failedReason or "")


async def test_unrecoverable_error_skips_remaining_attempts(
        engine_redis: Redis, make_settings: Callable[..., Settings]) -> None:
    from streams import UnrecoverableError

    settings = make_settings(jobs={"attempts": 5})
    job = await Producer(engine_redis, settings).add(Q, {})
    calls = 0

    async def handler(ctx: JobContext) -> None:
        nonlocal calls
        calls += 1
        raise UnrecoverableError("no such company")

    await asyncio.wait_for(QueueWorker(settings, Q, handler, redis=engine_redis).run(burst=True), 20)
    assert calls == 1
    assert (await QueueAdmin(engine_redis, settings).job(job.id)).state == "failed"


async def test_concurrency_limit_is_respected(engine_redis: Redis, make_settings: Callable[..., Settings]) -> None:
    settings = make_settings(jobs={"concurrency": 3})
    await Producer(engine_redis, settings).add_many(Q, [JobSpec({}) for _ in range(12)])
    running = peak = 0

    async def handler(ctx: JobContext) -> None:
        nonlocal running, peak
        running += 1
        peak = max(peak, running)
        await asyncio.sleep(0.05)
        running -= 1

    await asyncio.wait_for(QueueWorker(settings, Q, handler, redis=engine_redis).run(burst=True), 20)
    assert peak == 3


async def test_a_slot_frees_when_the_handler_returns_and_shutdown_waits_for_the_write(
        engine_redis: Redis, make_settings: Callable[..., Settings]) -> None:
    # Concurrency 1: the second job starts while the first one's success is still being
    # written (held here at the worker's own completer, not in Redis); the first stays in
    # flight until it is written, and a stop in between waits for the write: nothing is
    # left pending for another worker to run again.
    settings = make_settings(jobs={"concurrency": 1})
    first, second = await Producer(engine_redis, settings).add_many(Q, [JobSpec({"n": 1}), JobSpec({"n": 2})])
    started: list[int] = []
    worker = QueueWorker(settings, Q, lambda ctx: _record_start(started, ctx), redis=engine_redis)
    write_held = asyncio.Event()
    complete = worker._jobs.completer.complete

    async def held_complete(delivery: Delivery, value: str) -> bool:
        if delivery.job_id == first.id:
            await write_held.wait()
        return await complete(delivery, value)

    worker._jobs.completer.complete = held_complete  # type: ignore[method-assign]
    running = asyncio.create_task(worker.run())
    await eventually(lambda: _true(started == [1, 2]))
    # The first stays in flight, being written; the second's write goes through a moment after its start.
    await eventually(lambda: _true(worker.in_flight == 1))
    worker.stop()
    await asyncio.sleep(0.2)
    assert not running.done()  # shutdown waits for the held write
    write_held.set()
    await asyncio.wait_for(running, 10)
    admin = QueueAdmin(engine_redis, settings)
    assert [(await admin.job(job.id)).state for job in (first, second)] == ["completed", "completed"]
    assert (await admin.status(Q)).pending == 0


async def _record_start(started: list[int], ctx: JobContext) -> None:
    started.append(ctx.data["n"])


async def _true(value: bool) -> bool:
    return value
