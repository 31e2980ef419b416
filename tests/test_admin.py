"""Queue control and inspection (streams.admin.QueueAdmin) and the producer features it
reports on, checked against real outcomes in Redis: counts per state, stream figures,
pause/resume, one job's record and logs, remove, retry, clean, retention by count, the
dead-letter stream, idempotency keys, priority lanes and delayed jobs."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from redis.asyncio import Redis

from config import Settings
from streams import (JobContext, JobNotFound, JobSpec, JobState, JobStateConflict, Producer,
                     QueueAdmin, QueueKeys, QueueWorker, UnknownQueue, UnrecoverableError)
from streams.keys import GROUP
from streams.delivery import Delivery
from streams.scripts import QueueScripts, Scripts

Q = "jobs"
BURST_TIMEOUT = 30.0

Handler = Callable[[JobContext], Awaitable[Any]]


# -- helpers ------------------------------------------------------------------------

async def burst(settings: Settings, handler: Handler, queue: str = Q, **kwargs: Any) -> None:
    """Runs one worker until the queue is drained (or, when paused, returns at once)."""
    worker = QueueWorker(settings, queue, handler, **kwargs)
    await asyncio.wait_for(worker.run(burst=True), BURST_TIMEOUT)


async def server_ms(client: Redis) -> int:
    seconds, micros = await client.time()
    return int(seconds) * 1000 + int(micros) // 1000


def recorder(fail: Callable[[JobContext], bool] = lambda ctx: False) -> tuple[list[JobContext], Handler]:
    """A handler that records every call and raises for the jobs `fail` picks."""
    calls: list[JobContext] = []

    async def handler(ctx: JobContext) -> Any:
        calls.append(ctx)
        if fail(ctx):
            raise ValueError(f"boom {ctx.data.get('n') if isinstance(ctx.data, dict) else ''}")
        return {"done": ctx.data}

    return calls, handler


def fails_when_asked(ctx: JobContext) -> bool:
    return isinstance(ctx.data, dict) and bool(ctx.data.get("fail"))


async def always_ok(ctx: JobContext) -> Any:
    return {"ok": True, "data": ctx.data}


async def always_fail(ctx: JobContext) -> Any:
    raise ValueError(f"boom {ctx.data['n']}")


async def make_active(client: Redis, settings: Settings, queue: str = Q) -> list[str]:
    """Delivers one waiting job to consumer "c1" without running it: it is then active."""
    scripts = QueueScripts(Scripts(client), settings, queue)
    for lane in QueueKeys(settings.key_prefix, queue).lanes:
        try:
            await client.xgroup_create(lane, GROUP, id="0", mkstream=True)
        except Exception as exc:  # the group may exist already
            if "BUSYGROUP" not in str(exc):
                raise
    result = await scripts.read("c1", 1)
    assert result.kind == "jobs", result
    return [d.job_id for d in result.jobs]


async def lane_len(client: Redis, keys: QueueKeys, lane: str) -> int:
    return await client.xlen(keys.lane(lane)) if await client.exists(keys.lane(lane)) else 0


# -- status -------------------------------------------------------------------------

async def test_status_counts_each_state_and_stream_figures(engine_redis: Redis, make_settings: Callable[..., Settings]) -> None:
    settings = make_settings(jobs={"attempts": 1})
    producer, admin = Producer(engine_redis, settings), QueueAdmin(engine_redis, settings)
    keys = QueueKeys(settings.key_prefix, Q)

    empty = await admin.status(Q)
    assert empty.counts == {"waiting": 0, "active": 0, "delayed": 0, "completed": 0, "failed": 0, "paused": 0}
    assert (empty.dead, empty.length, empty.lag, empty.pending, empty.paused) == (0, 0, 0, 0, False)

    # 3 succeed, 2 fail (attempts=1: straight to the dead-letter stream).
    for n in range(5):
        await producer.add(Q, {"n": n, "fail": n >= 3})
    calls, handler = recorder(fails_when_asked)
    await burst(settings, handler)
    assert len(calls) == 5

    # Then 4 waiting (one of which will be made active) and 2 delayed.
    waiting_ids = [(await producer.add(Q, {"n": 10 + n})).id for n in range(4)]
    for n in range(2):
        await producer.add(Q, {"n": 20 + n}, delay=60)

    st = await admin.status(Q)
    assert st.counts == {"waiting": 4, "active": 0, "delayed": 2, "completed": 3, "failed": 2, "paused": 0}
    assert st.dead == 2
    lengths = sum([await lane_len(engine_redis, keys, lane) for lane in ("high", "normal", "low")])
    assert st.length == lengths >= 4
    assert st.lag == 4  # the four new entries have not been read by the group
    assert st.pending == 0

    (active_id,) = await make_active(engine_redis, settings)
    assert active_id == waiting_ids[0]
    st = await admin.status(Q)
    assert st.counts == {"waiting": 3, "active": 1, "delayed": 2, "completed": 3, "failed": 2, "paused": 0}
    assert st.lag == 3
    assert st.pending == 1
    normal = next(lane for lane in st.lanes if lane.lane == "normal")
    assert [(c.name, c.pending) for c in normal.consumers if c.pending] == [("c1", 1)]
    assert normal.oldest_pending_ms is not None and normal.oldest_pending_ms >= 0


async def test_status_of_paused_queue_reports_waiting_jobs_as_paused(
        engine_redis: Redis, make_settings: Callable[..., Settings]) -> None:
    settings = make_settings()
    producer, admin = Producer(engine_redis, settings), QueueAdmin(engine_redis, settings)
    for n in range(3):
        await producer.add(Q, {"n": n})
    await producer.add(Q, {"n": 9}, delay=60)
    await admin.pause(Q)
    st = await admin.status(Q)
    assert st.paused is True
    assert st.counts["paused"] == 3
    assert st.counts["waiting"] == 0
    assert st.counts["delayed"] == 1
    await admin.resume(Q)
    st = await admin.status(Q)
    assert st.paused is False
    assert (st.counts["waiting"], st.counts["paused"]) == (3, 0)


async def test_status_and_keys_refuse_unknown_queue(engine_redis: Redis, make_settings: Callable[..., Settings]) -> None:
    admin = QueueAdmin(engine_redis, make_settings())
    with pytest.raises(UnknownQueue):
        await admin.status("nosuchqueue")
    with pytest.raises(UnknownQueue):
        await admin.pause("nosuchqueue")
    assert [s.queue for s in await admin.all_status()] == list(make_settings().queues)


# -- pause / resume ------------------------------------------------------------------

async def test_paused_queue_starts_nothing_until_resumed(engine_redis: Redis, make_settings: Callable[..., Settings]) -> None:
    settings = make_settings()
    producer, admin = Producer(engine_redis, settings), QueueAdmin(engine_redis, settings)
    ids = [(await producer.add(Q, {"n": n})).id for n in range(5)]
    await admin.pause(Q)

    calls, handler = recorder()
    await burst(settings, handler)  # returns at once: the queue is paused
    assert calls == []
    for job_id in ids:
        assert (await admin.job(job_id)).state is JobState.WAITING
    st = await admin.status(Q)
    assert (st.counts["paused"], st.counts["active"], st.pending) == (5, 0, 0)

    await admin.resume(Q)
    await burst(settings, handler)
    assert sorted(c.id for c in calls) == sorted(ids)
    for job_id in ids:
        assert (await admin.job(job_id)).state is JobState.COMPLETED
    st = await admin.status(Q)
    assert st.counts["completed"] == 5 and st.counts["waiting"] == 0


async def test_pause_does_not_stop_due_delayed_job_becoming_waiting(
        engine_redis: Redis, make_settings: Callable[..., Settings]) -> None:
    # A delayed job that falls due in a paused queue joins its lane but is not started.
    settings = make_settings()
    producer, admin = Producer(engine_redis, settings), QueueAdmin(engine_redis, settings)
    job_id = (await producer.add(Q, {"n": 1}, delay=0.05)).id
    await admin.pause(Q)
    calls, handler = recorder()
    deadline = asyncio.get_running_loop().time() + 10
    while (await admin.job(job_id)).state is not JobState.WAITING:
        assert asyncio.get_running_loop().time() < deadline, "delayed job never became waiting"
        await burst(settings, handler)  # each read moves due scheduled jobs, paused or not
    assert calls == []
    assert (await admin.status(Q)).counts["paused"] == 1


# -- one job ---------------------------------------------------------------------------

async def test_job_record_after_completion_and_its_logs(engine_redis: Redis, make_settings: Callable[..., Settings]) -> None:
    settings = make_settings()
    producer, admin = Producer(engine_redis, settings), QueueAdmin(engine_redis, settings)
    added = await producer.add(Q, {"company": "Acme"}, name="ping")
    assert added.created is True and added.id.startswith(f"{Q}-")
    before = await admin.job(added.id)
    assert before.state is JobState.WAITING
    assert (before.attemptsMade, before.maxAttempts, before.progress) == (0, 5, 0)
    assert before.name == "ping" and before.lane == "normal" and before.data == {"company": "Acme"}

    seen_progress = []

    async def handler(ctx: JobContext) -> Any:
        await ctx.progress(50)
        seen_progress.append((await admin.job(ctx.id)).progress)
        assert (await admin.job(ctx.id)).state is JobState.ACTIVE
        await ctx.log("first line")
        await ctx.log("second line")
        return {"answer": 42, "company": ctx.data["company"]}

    await burst(settings, handler)
    job = await admin.job(added.id)
    assert seen_progress == [50]
    assert job.state is JobState.COMPLETED
    assert job.returnvalue == {"answer": 42, "company": "Acme"}
    assert job.attemptsMade == 1
    assert job.progress == 100
    assert job.processedAt is not None and job.finishedAt is not None and job.createdAt is not None
    assert job.createdAt <= job.processedAt <= job.finishedAt
    assert job.duration == job.finishedAt - job.processedAt >= 0
    assert job.failedReason is None and job.errorType is None
    assert await admin.job_logs(added.id) == ["first line", "second line"]
    assert await admin.job_logs(added.id, limit=1) == ["second line"]


@pytest.mark.parametrize("job_id", [
    "not a job id",                       # malformed
    "signals",                            # no hyphen
    "signals-../../etc",                  # characters outside the id alphabet
    "Signals-01JD2X0000000000000000000",  # queue part must be lower case
    "nosuchqueue-01JD2X0000000000000000000",  # well formed, queue not configured
    "signals-01JD2X0000000000000000000",  # well formed, no such job
])
async def test_job_not_found(engine_redis: Redis, make_settings: Callable[..., Settings], job_id: str) -> None:
    admin = QueueAdmin(engine_redis, make_settings())
    with pytest.raises(JobNotFound):
        await admin.job(job_id)
    with pytest.raises(JobNotFound):
        await admin.remove(job_id)
    with pytest.raises(JobNotFound):
        await admin.retry(job_id)


# -- remove ----------------------------------------------------------------------------

@pytest.mark.parametrize("groups_exist", [False, True], ids=["before-any-worker", "after-a-worker"])
async def test_remove_waiting_job_deletes_its_entry_and_record(
        engine_redis: Redis, make_settings: Callable[..., Settings], groups_exist: bool) -> None:
    settings = make_settings()
    producer, admin = Producer(engine_redis, settings), QueueAdmin(engine_redis, settings)
    keys = QueueKeys(settings.key_prefix, Q)
    if groups_exist:
        await burst(settings, always_ok)  # creates the consumer groups
    ids = [(await producer.add(Q, {"n": n})).id for n in range(3)]
    assert await lane_len(engine_redis, keys, "normal") == 3
    entry = await engine_redis.hget(keys.job(ids[1]), "entry")

    await admin.remove(ids[1])

    assert await lane_len(engine_redis, keys, "normal") == 2
    assert await engine_redis.xrange(keys.lane("normal"), entry, entry) == []
    assert not await engine_redis.exists(keys.job(ids[1]))
    assert await engine_redis.zscore(keys.state_index("waiting"), ids[1]) is None
    with pytest.raises(JobNotFound):
        await admin.job(ids[1])
    with pytest.raises(JobNotFound):
        await admin.remove(ids[1])
    assert (await admin.status(Q)).counts["waiting"] == 2

    calls, handler = recorder()
    await burst(settings, handler)
    assert sorted(c.id for c in calls) == sorted([ids[0], ids[2]])


async def test_remove_delayed_job_takes_it_off_the_schedule(
        engine_redis: Redis, make_settings: Callable[..., Settings]) -> None:
    settings = make_settings()
    producer, admin = Producer(engine_redis, settings), QueueAdmin(engine_redis, settings)
    keys = QueueKeys(settings.key_prefix, Q)
    job_id = (await producer.add(Q, {"n": 1}, delay=60)).id
    assert (await admin.job(job_id)).state is JobState.DELAYED
    assert await engine_redis.zscore(keys.scheduled, job_id) is not None

    await admin.remove(job_id)

    assert await engine_redis.zscore(keys.scheduled, job_id) is None
    assert not await engine_redis.exists(keys.job(job_id))
    assert (await admin.status(Q)).counts["delayed"] == 0
    calls, handler = recorder()
    await burst(settings, handler)  # nothing is left to wait for
    assert calls == []


async def test_remove_completed_job(engine_redis: Redis, make_settings: Callable[..., Settings]) -> None:
    settings = make_settings()
    producer, admin = Producer(engine_redis, settings), QueueAdmin(engine_redis, settings)
    keys = QueueKeys(settings.key_prefix, Q)
    job_id = (await producer.add(Q, {"n": 1})).id

    async def logging_handler(ctx: JobContext) -> Any:
        await ctx.log("hello")
        return 1

    await burst(settings, logging_handler)
    assert (await admin.job(job_id)).state is JobState.COMPLETED
    assert await engine_redis.exists(keys.logs(job_id))

    await admin.remove(job_id)

    assert not await engine_redis.exists(keys.job(job_id))
    assert not await engine_redis.exists(keys.logs(job_id))
    assert await engine_redis.zcard(keys.state_index("completed")) == 0
    assert (await admin.status(Q)).counts["completed"] == 0


async def test_remove_active_job_is_refused(engine_redis: Redis, make_settings: Callable[..., Settings]) -> None:
    settings = make_settings()
    producer, admin = Producer(engine_redis, settings), QueueAdmin(engine_redis, settings)
    keys = QueueKeys(settings.key_prefix, Q)
    job_id = (await producer.add(Q, {"n": 1})).id
    assert await make_active(engine_redis, settings) == [job_id]

    with pytest.raises(JobStateConflict):
        await admin.remove(job_id)

    job = await admin.job(job_id)
    assert job.state is JobState.ACTIVE
    assert await engine_redis.zscore(keys.state_index("active"), job_id) is not None
    assert (await admin.status(Q)).pending == 1


async def test_remove_job_backing_off_acks_its_pending_entry(
        engine_redis: Redis, make_settings: Callable[..., Settings]) -> None:
    # A failed attempt with retries left keeps its entry pending (state delayed);
    # removing the job must ack and delete that entry so nothing reclaims it.
    settings = make_settings(jobs={"backoff_delay": 60})
    producer, admin = Producer(engine_redis, settings), QueueAdmin(engine_redis, settings)
    keys = QueueKeys(settings.key_prefix, Q)
    scripts = QueueScripts(Scripts(engine_redis), settings, Q)
    job_id = (await producer.add(Q, {"n": 1})).id
    await make_active(engine_redis, settings)
    (delivery,) = await _pending_deliveries(engine_redis, settings)
    assert await scripts.fail("c1", delivery, ValueError("x"), "stack", 60, False) == "retry"
    assert (await admin.job(job_id)).state is JobState.DELAYED
    assert (await admin.status(Q)).counts["delayed"] == 1
    assert (await admin.status(Q)).pending == 1

    await admin.remove(job_id)

    st = await admin.status(Q)
    assert st.pending == 0
    assert st.counts["delayed"] == 0
    assert await lane_len(engine_redis, keys, "normal") == 0
    assert not await engine_redis.exists(keys.job(job_id))


async def _pending_deliveries(client: Redis, settings: Settings) -> list[Delivery]:
    """Every pending entry of the queue, as the Delivery its consumer holds."""
    keys = QueueKeys(settings.key_prefix, Q)
    out = []
    for index, lane in enumerate(keys.lanes, start=1):
        for p in await client.xpending_range(lane, GROUP, "-", "+", 100):
            (entry_id, fields), = await client.xrange(lane, p["message_id"], p["message_id"])
            out.append(Delivery(index, entry_id, fields["job"], None, 0, 0, int(p["times_delivered"])))
    return out


# -- retry -----------------------------------------------------------------------------

async def test_retry_failed_job_runs_it_again_with_fresh_attempts(
        engine_redis: Redis, make_settings: Callable[..., Settings]) -> None:
    settings = make_settings(jobs={"attempts": 1})
    producer, admin = Producer(engine_redis, settings), QueueAdmin(engine_redis, settings)
    job_id = (await producer.add(Q, {"n": 7})).id
    await burst(settings, always_fail)
    failed = await admin.job(job_id)
    assert failed.state is JobState.FAILED
    assert failed.attemptsMade == 1 and failed.failedReason == "boom 7" and failed.errorType == "ValueError"
    assert failed.stacktrace and "ValueError" in failed.stacktrace

    await admin.retry(job_id)

    again = await admin.job(job_id)
    assert again.state is JobState.WAITING
    assert again.attemptsMade == 0
    assert again.failedReason is None and again.finishedAt is None
    st = await admin.status(Q)
    assert (st.counts["waiting"], st.counts["failed"]) == (1, 0)

    calls, handler = recorder()
    await burst(settings, handler)
    assert [(c.id, c.attempt) for c in calls] == [(job_id, 1)]
    done = await admin.job(job_id)
    assert done.state is JobState.COMPLETED and done.returnvalue == {"done": {"n": 7}}

    with pytest.raises(JobStateConflict):
        await admin.retry(job_id)  # completed


async def test_retry_refuses_waiting_and_active_jobs(engine_redis: Redis, make_settings: Callable[..., Settings]) -> None:
    settings = make_settings()
    producer, admin = Producer(engine_redis, settings), QueueAdmin(engine_redis, settings)
    first = (await producer.add(Q, {"n": 1})).id
    second = (await producer.add(Q, {"n": 2})).id
    assert await make_active(engine_redis, settings) == [first]
    with pytest.raises(JobStateConflict):
        await admin.retry(first)
    with pytest.raises(JobStateConflict):
        await admin.retry(second)
    assert (await admin.job(second)).state is JobState.WAITING
    assert (await admin.status(Q)).length == 2  # no entry was added


# -- clean -----------------------------------------------------------------------------

async def test_clean_completed_deletes_oldest_up_to_limit(engine_redis: Redis, make_settings: Callable[..., Settings]) -> None:
    settings = make_settings()
    producer, admin = Producer(engine_redis, settings), QueueAdmin(engine_redis, settings)
    keys = QueueKeys(settings.key_prefix, Q)
    ids = [(await producer.add(Q, {"n": n})).id for n in range(5)]
    await burst(settings, always_ok)
    assert await engine_redis.zcard(keys.state_index("completed")) == 5

    assert await admin.clean(Q, grace=3600, limit=100) == []  # none old enough
    assert await engine_redis.zcard(keys.state_index("completed")) == 5

    oldest_two = await engine_redis.zrange(keys.state_index("completed"), 0, 1)
    removed = await admin.clean(Q, grace=0, limit=2)
    assert sorted(removed) == sorted(oldest_two)
    assert await engine_redis.zcard(keys.state_index("completed")) == 3
    for job_id in ids:
        exists = bool(await engine_redis.exists(keys.job(job_id)))
        assert exists == (job_id not in removed)
    assert (await admin.status(Q)).counts["completed"] == 3


async def test_clean_failed_leaves_completed_alone(engine_redis: Redis, make_settings: Callable[..., Settings]) -> None:
    settings = make_settings(jobs={"attempts": 1})
    producer, admin = Producer(engine_redis, settings), QueueAdmin(engine_redis, settings)
    keys = QueueKeys(settings.key_prefix, Q)
    ids = [(await producer.add(Q, {"n": n, "fail": n % 2 == 0})).id for n in range(6)]
    _, handler = recorder(fails_when_asked)
    await burst(settings, handler)
    assert (await admin.status(Q)).counts["failed"] == 3

    assert await admin.clean(Q, grace=3600, limit=10, state="failed") == []
    removed = await admin.clean(Q, grace=0, limit=10, state="failed")

    assert sorted(removed) == sorted(ids[0::2])
    for job_id in ids[0::2]:
        assert not await engine_redis.exists(keys.job(job_id))
    for job_id in ids[1::2]:
        assert (await admin.job(job_id)).state is JobState.COMPLETED
    st = await admin.status(Q)
    assert (st.counts["failed"], st.counts["completed"], st.dead) == (0, 3, 3)  # letters stay


# -- retention by count --------------------------------------------------------------------

async def _complete_one_at_a_time(settings: Settings, producer: Producer, handler: Handler, n: int) -> list[str]:
    """Adds and finishes jobs one by one, so their finishing order is their id order."""
    ids = []
    for i in range(n):
        ids.append((await producer.add(Q, {"n": i})).id)
        await burst(settings, handler, concurrency=1)
    return ids


async def test_keep_completed_keeps_only_the_newest(engine_redis: Redis, make_settings: Callable[..., Settings]) -> None:
    settings = make_settings(jobs={"keep_completed": 3})
    producer, admin = Producer(engine_redis, settings), QueueAdmin(engine_redis, settings)
    keys = QueueKeys(settings.key_prefix, Q)

    async def handler(ctx: JobContext) -> Any:
        await ctx.log("ran")
        return ctx.data["n"]

    ids = await _complete_one_at_a_time(settings, producer, handler, 10)

    assert await engine_redis.zcard(keys.state_index("completed")) == 3
    assert sorted(await engine_redis.zrange(keys.state_index("completed"), 0, -1)) == sorted(ids[-3:])
    for job_id in ids[:7]:
        assert not await engine_redis.exists(keys.job(job_id)), job_id
        assert not await engine_redis.exists(keys.logs(job_id)), job_id
    for n, job_id in enumerate(ids[7:], start=7):
        assert (await admin.job(job_id)).returnvalue == n
    assert (await admin.status(Q)).counts["completed"] == 3


async def test_keep_failed_keeps_only_the_newest(engine_redis: Redis, make_settings: Callable[..., Settings]) -> None:
    settings = make_settings(jobs={"keep_failed": 2, "attempts": 1})
    producer, admin = Producer(engine_redis, settings), QueueAdmin(engine_redis, settings)
    keys = QueueKeys(settings.key_prefix, Q)
    ids = await _complete_one_at_a_time(settings, producer, always_fail, 6)

    assert sorted(await engine_redis.zrange(keys.state_index("failed"), 0, -1)) == sorted(ids[-2:])
    for job_id in ids[:4]:
        assert not await engine_redis.exists(keys.job(job_id)), job_id
    for job_id in ids[4:]:
        assert (await admin.job(job_id)).state is JobState.FAILED
    st = await admin.status(Q)
    assert st.counts["failed"] == 2
    assert st.dead == 6  # retention trims records, never the dead-letter stream
    assert [d.job_id for d in await admin.dead_letters(Q)] == ids


# -- dead letters ----------------------------------------------------------------------

async def test_dead_letters_list_and_page(engine_redis: Redis, make_settings: Callable[..., Settings]) -> None:
    settings = make_settings(jobs={"attempts": 2, "backoff_delay": 0.05})
    producer, admin = Producer(engine_redis, settings), QueueAdmin(engine_redis, settings)
    t0 = await server_ms(engine_redis)
    ids = [(await producer.add(Q, {"n": n}, name="sig")).id for n in range(5)]
    calls, _ = recorder()

    async def handler(ctx: JobContext) -> Any:
        calls.append(ctx)
        raise ValueError(f"boom {ctx.data['n']}")

    await burst(settings, handler)
    assert Counter(c.id for c in calls) == {job_id: 2 for job_id in ids}  # every attempt used
    t1 = await server_ms(engine_redis)

    letters = await admin.dead_letters(Q)
    assert sorted(d.job_id for d in letters) == sorted(ids)
    for letter in letters:
        n = letter.data["n"]
        assert letter.job_id == ids[n]
        assert letter.data == {"n": n}
        assert letter.name == "sig"
        assert letter.error == f"boom {n}"
        assert letter.error_type == "ValueError"
        assert letter.attempts == 2
        assert letter.created_at is not None and t0 <= letter.created_at <= letter.failed_at <= t1
    assert (await admin.status(Q)).dead == 5

    pages, after = [], "-"
    while page := await admin.dead_letters(Q, after=after, limit=2):
        pages.append(page)
        after = page[-1].entry_id
    assert [len(p) for p in pages] == [2, 2, 1]
    assert [d.entry_id for p in pages for d in p] == [d.entry_id for d in letters]


async def test_unrecoverable_error_dead_letters_at_once(engine_redis: Redis, make_settings: Callable[..., Settings]) -> None:
    settings = make_settings(jobs={"attempts": 5})
    producer, admin = Producer(engine_redis, settings), QueueAdmin(engine_redis, settings)
    job_id = (await producer.add(Q, {"n": 1})).id
    calls = []

    async def handler(ctx: JobContext) -> Any:
        calls.append(ctx.attempt)
        raise UnrecoverableError("no point retrying")

    await burst(settings, handler)
    assert calls == [1]
    (letter,) = await admin.dead_letters(Q)
    assert (letter.job_id, letter.error, letter.error_type, letter.attempts) == (
        job_id, "no point retrying", "UnrecoverableError", 1)
    assert (await admin.job(job_id)).state is JobState.FAILED


async def test_replay_requeues_with_fresh_attempts_once(engine_redis: Redis, make_settings: Callable[..., Settings]) -> None:
    settings = make_settings(jobs={"attempts": 2, "backoff_delay": 0.05})
    producer, admin = Producer(engine_redis, settings), QueueAdmin(engine_redis, settings)
    ids = [(await producer.add(Q, {"n": n})).id for n in range(3)]
    await burst(settings, always_fail)
    assert len(await admin.dead_letters(Q)) == 3

    queued = await admin.replay(Q)

    assert sorted(queued) == sorted(ids)
    assert await admin.dead_letters(Q) == []
    for job_id in ids:
        job = await admin.job(job_id)
        assert job.state is JobState.WAITING
        assert (job.attemptsMade, job.stalls, job.maxAttempts) == (0, 0, 2)
    assert await admin.replay(Q) == []  # already replayed: nothing to do
    assert (await admin.status(Q)).counts["waiting"] == 3

    calls, handler = recorder()
    await burst(settings, handler)
    assert sorted((c.id, c.attempt) for c in calls) == sorted((job_id, 1) for job_id in ids)
    for job_id in ids:
        assert (await admin.job(job_id)).state is JobState.COMPLETED


async def test_replay_selected_letters_only(engine_redis: Redis, make_settings: Callable[..., Settings]) -> None:
    settings = make_settings(jobs={"attempts": 1})
    producer, admin = Producer(engine_redis, settings), QueueAdmin(engine_redis, settings)
    ids = [(await producer.add(Q, {"n": n})).id for n in range(3)]
    await burst(settings, always_fail)
    assert await admin.replay(Q, [ids[1]]) == [ids[1]]
    assert sorted(d.job_id for d in await admin.dead_letters(Q)) == sorted([ids[0], ids[2]])
    assert (await admin.job(ids[0])).state is JobState.FAILED
    assert (await admin.job(ids[1])).state is JobState.WAITING
    assert await admin.replay(Q, [ids[1]]) == []


async def test_replay_recreates_a_cleaned_job_from_its_letter(
        engine_redis: Redis, make_settings: Callable[..., Settings]) -> None:
    settings = make_settings(jobs={"attempts": 1})
    producer, admin = Producer(engine_redis, settings), QueueAdmin(engine_redis, settings)
    data = {"n": 3, "nested": {"list": [1, 2, "three"]}}
    job_id = (await producer.add(Q, data, name="custom", priority="high")).id
    await burst(settings, always_fail)
    assert await admin.clean(Q, grace=0, limit=100, state="failed") == [job_id]
    with pytest.raises(JobNotFound):
        await admin.job(job_id)

    assert await admin.replay(Q) == [job_id]

    job = await admin.job(job_id)
    assert job.state is JobState.WAITING
    assert (job.data, job.name, job.lane, job.attemptsMade, job.maxAttempts) == (data, "custom", "high", 0, 1)
    assert await admin.dead_letters(Q) == []
    keys = QueueKeys(settings.key_prefix, Q)
    assert await lane_len(engine_redis, keys, "high") >= 1

    calls, handler = recorder()
    await burst(settings, handler)
    assert [(c.id, c.data) for c in calls] == [(job_id, data)]
    done = await admin.job(job_id)
    assert done.state is JobState.COMPLETED and done.returnvalue == {"done": data}


async def test_purge_dead_letters(engine_redis: Redis, make_settings: Callable[..., Settings]) -> None:
    settings = make_settings(jobs={"attempts": 1})
    producer, admin = Producer(engine_redis, settings), QueueAdmin(engine_redis, settings)
    ids = [(await producer.add(Q, {"n": n})).id for n in range(4)]
    await burst(settings, always_fail)
    assert len(await admin.dead_letters(Q)) == 4

    assert await admin.purge(Q, [ids[0], ids[2]]) == 2
    assert sorted(d.job_id for d in await admin.dead_letters(Q)) == sorted([ids[1], ids[3]])
    assert await admin.purge(Q, ["signals-NOSUCHJOB"]) == 0
    assert await admin.purge(Q) == 2
    assert await admin.dead_letters(Q) == []
    assert (await admin.status(Q)).dead == 0
    assert await admin.purge(Q) == 0
    # Purging letters does not touch the records.
    assert (await admin.job(ids[0])).state is JobState.FAILED


# -- idempotency ---------------------------------------------------------------------------

async def test_idempotency_key_adds_one_job_only(engine_redis: Redis, make_settings: Callable[..., Settings]) -> None:
    settings = make_settings()
    producer, admin = Producer(engine_redis, settings), QueueAdmin(engine_redis, settings)
    first = await producer.add(Q, {"n": 1}, idempotency_key="order-42")
    second = await producer.add(Q, {"n": 2}, idempotency_key="order-42")
    other = await producer.add(Q, {"n": 3}, idempotency_key="order-43")
    assert first.created is True
    assert (second.id, second.created) == (first.id, False)
    assert other.created is True and other.id != first.id
    st = await admin.status(Q)
    assert st.counts["waiting"] == 2
    assert st.length == 2
    assert (await admin.job(first.id)).data == {"n": 1}

    in_batch = await producer.add_many(Q, [JobSpec({"n": 4}, idempotency_key="batch"),
                                           JobSpec({"n": 5}, idempotency_key="batch")])
    assert in_batch[0].created and not in_batch[1].created and in_batch[0].id == in_batch[1].id
    assert (await admin.status(Q)).counts["waiting"] == 3


# -- priority lanes ---------------------------------------------------------------------------

async def test_strict_priority_serves_high_then_normal_then_low(
        engine_redis: Redis, make_settings: Callable[..., Settings]) -> None:
    settings = make_settings(jobs={"concurrency": 1})
    producer = Producer(engine_redis, settings)
    keys = QueueKeys(settings.key_prefix, Q)
    for lane in ("low", "normal", "high"):
        for n in range(3):
            await producer.add(Q, {"lane": lane, "n": n}, priority=lane)
    assert await lane_len(engine_redis, keys, "high") == 3
    calls, handler = recorder()
    await burst(settings, handler)
    assert [c.data["lane"] for c in calls] == ["high"] * 3 + ["normal"] * 3 + ["low"] * 3
    assert [c.data["n"] for c in calls] == [0, 1, 2] * 3  # FIFO within a lane


async def test_priority_from_job_data(engine_redis: Redis, make_settings: Callable[..., Settings]) -> None:
    settings = make_settings()
    producer, admin = Producer(engine_redis, settings), QueueAdmin(engine_redis, settings)
    keys = QueueKeys(settings.key_prefix, Q)
    job = await producer.add(Q, {"priority": "high"})
    assert (await admin.job(job.id)).lane == "high"
    assert await lane_len(engine_redis, keys, "high") == 1
    low = await producer.add(Q, {"priority": "high"}, priority="low")  # the argument wins
    assert (await admin.job(low.id)).lane == "low"


async def test_lane_weights_prevent_starvation(engine_redis: Redis, make_settings: Callable[..., Settings]) -> None:
    settings = make_settings(jobs={"lane_weights": "1:1:1", "concurrency": 1})
    producer = Producer(engine_redis, settings)
    for lane in ("high", "normal", "low"):
        await producer.add_many(Q, [JobSpec({"lane": lane, "n": n}, priority=lane) for n in range(30)])
    calls, handler = recorder()
    await burst(settings, handler)
    order = [c.data["lane"] for c in calls]
    assert len(order) == 90
    first = Counter(order[:9])
    assert set(first) == {"high", "normal", "low"}, order[:9]
    assert first == {"high": 3, "normal": 3, "low": 3}, order[:9]


# -- delayed jobs ---------------------------------------------------------------------------

async def test_delayed_job_waits_for_its_time(engine_redis: Redis, make_settings: Callable[..., Settings]) -> None:
    settings = make_settings()
    producer, admin = Producer(engine_redis, settings), QueueAdmin(engine_redis, settings)
    added_at = await server_ms(engine_redis)
    job_id = (await producer.add(Q, {"n": 1}, delay=0.5)).id
    now_id = (await producer.add(Q, {"n": 2})).id

    job = await admin.job(job_id)
    assert job.state is JobState.DELAYED
    assert job.dueAt is not None and job.dueAt >= added_at + 500
    due_at = job.dueAt
    st = await admin.status(Q)
    assert (st.counts["delayed"], st.counts["waiting"]) == (1, 1)
    assert [j.id for j in await admin.jobs(Q, JobState.DELAYED)] == [job_id]

    started: dict[str, int] = {}

    async def handler(ctx: JobContext) -> Any:
        started[ctx.id] = await server_ms(engine_redis)
        return None

    await burst(settings, handler)
    assert set(started) == {job_id, now_id}
    assert started[now_id] < due_at  # the due job did not wait for the delayed one
    assert started[job_id] >= due_at
    done = await admin.job(job_id)
    assert done.state is JobState.COMPLETED
    assert done.processedAt is not None and done.processedAt >= due_at
    assert (await admin.status(Q)).counts["delayed"] == 0
