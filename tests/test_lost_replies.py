"""Replies lost after Redis applied the call (issue 13, finding 4): complete, fail and
extend are idempotent per run, through the run token the scripts record. The worker
talks to Redis through a TCP proxy (tests/reply_proxy.py) that drops the reply to a
chosen script call, so the worker re-sends it, as it would after a real network fault."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable
from urllib.parse import urlsplit

import orjson
import pytest
from redis.asyncio import Redis
from redis_server import on_cluster
from reply_proxy import ReplyDroppingProxy, reply_proxy

from config import Settings
from streams import JobContext, Producer, QueueAdmin, QueueWorker, UnrecoverableError, metrics
from streams.keys import GROUP, QueueKeys
from streams.scripts import QueueScripts, Scripts


@pytest.fixture
async def proxy(redis_url: str) -> AsyncIterator[ReplyDroppingProxy]:
    """The proxy runs on the test's event loop: the worker's settings say REDIS_CLUSTER=no,
    so no synchronous INFO blocks the loop (and the proxy with it) at connect."""
    if on_cluster():
        pytest.skip("one proxy stands for one server")
    async with reply_proxy(urlsplit(redis_url).port or 6379) as running:
        yield running


def sha(redis: Redis, script: str) -> bytes:
    return Scripts(redis)[script].sha.encode()


def counted(counter: object, *labels: str) -> float:
    return counter.labels(*labels)._value.get()  # type: ignore[attr-defined]


async def run_worker(settings: Settings, queue: str, handler: Callable[[JobContext], object]) -> None:
    await asyncio.wait_for(QueueWorker(settings, queue, handler).run(burst=True), 20)  # type: ignore[arg-type]


async def test_a_resent_failure_counts_its_attempt_once(
        engine_redis: Redis, make_settings: Callable[..., Settings], proxy: ReplyDroppingProxy) -> None:
    # The backoff outlasts the re-send's wait (0.1 s), so the re-sent call finds the entry still this run's.
    settings = make_settings(jobs={"attempts": 3, "backoff_delay": 0.4}, redis_cluster="no")
    job = await Producer(engine_redis, settings).add("jobs", {"n": 1})
    proxy.drop_replies_to(sha(engine_redis, "fail"))
    runs: list[int] = []

    async def always_fails(ctx: JobContext) -> None:
        runs.append(ctx.attempt)
        raise RuntimeError("down")

    await run_worker(settings.model_copy(update={"redis_url": proxy.url}), "jobs", always_fails)
    assert proxy.dropped == 1
    assert runs == [1, 2, 3]  # the lost reply's call, re-sent, did not count attempt 1 twice
    (letter,) = await QueueAdmin(engine_redis, settings).dead_letters("jobs")
    assert (letter.job_id, letter.attempts) == (job.id, 3)


async def test_a_resent_completion_is_recorded_not_discarded(
        engine_redis: Redis, make_settings: Callable[..., Settings], proxy: ReplyDroppingProxy,
        caplog: pytest.LogCaptureFixture) -> None:
    settings = make_settings(redis_cluster="no")
    job = await Producer(engine_redis, settings).add("jobs", {"n": 1})
    proxy.drop_replies_to(sha(engine_redis, "complete"))
    discarded, completed = counted(metrics.DISCARDED, "jobs"), counted(metrics.COMPLETED, "jobs")

    async def succeeds(ctx: JobContext) -> int:
        return 7

    with caplog.at_level(logging.INFO, "streams.worker"):
        await run_worker(settings.model_copy(update={"redis_url": proxy.url}), "jobs", succeeds)
    assert proxy.dropped == 1
    assert (counted(metrics.DISCARDED, "jobs") - discarded, counted(metrics.COMPLETED, "jobs") - completed) == (0, 1)
    assert "discarded" not in caplog.text and f"job {job.id} completed" in caplog.text
    record = await engine_redis.hgetall(QueueKeys(settings.key_prefix, "jobs").job(job.id))
    assert (record["state"], record["returnvalue"], record["attemptsMade"]) == ("completed", "7", "1")


async def test_a_resent_stream_kept_failure_is_not_counted_discarded(
        redis: Redis, engine_redis: Redis, make_settings: Callable[..., Settings],
        proxy: ReplyDroppingProxy) -> None:
    settings = make_settings(redis_cluster="no")
    lane = QueueKeys(settings.key_prefix, "signals").lane("normal")
    await engine_redis.xadd(lane, {"data": orjson.dumps({"poison": True}).decode()})
    proxy.drop_replies_to(sha(engine_redis, "fail_entry"))
    discarded, dead = counted(metrics.DISCARDED, "signals"), counted(metrics.FAILED, "signals", "dead")

    async def refuses(ctx: JobContext) -> None:
        raise UnrecoverableError("never")

    await run_worker(settings.model_copy(update={"redis_url": proxy.url}), "signals", refuses)
    assert proxy.dropped == 1
    assert (counted(metrics.DISCARDED, "signals") - discarded, counted(metrics.FAILED, "signals", "dead") - dead) \
        == (0, 1)
    assert len(await QueueAdmin(engine_redis, settings).dead_letters("signals")) == 1


@pytest.mark.parametrize("queue", ["jobs", "signals"])
async def test_a_run_whose_failure_is_recorded_has_no_lease_left_to_extend(
        engine_redis: Redis, make_settings: Callable[..., Settings], queue: str) -> None:
    settings = make_settings()
    scripts = QueueScripts(Scripts(engine_redis), settings, queue)
    for key in scripts.keys.lanes:
        await engine_redis.xgroup_create(key, GROUP, id="0", mkstream=True)
    await Producer(engine_redis, settings).add(queue, {"n": 1})
    if queue == "jobs":
        (d,) = (await scripts.read("c1", 1)).jobs
        assert await scripts.extend("c1", [d]) == [True]
        assert await scripts.fail("c1", d, RuntimeError("x"), "", 30.0, False) == "retry"
        assert await scripts.fail("c1", d, RuntimeError("x"), "", 30.0, False) == "retry"  # re-sent: same answer
        assert await engine_redis.hget(scripts.keys.job(d.job_id), "attemptsMade") == "1"
    else:
        (d,) = (await scripts.read_entries("c1", 1)).jobs
        assert await scripts.extend("c1", [d]) == [True]
        assert await scripts.fail_entry("c1", d, d.raw or "", RuntimeError("x"), 30.0, False) == "retry"
        assert await scripts.fail_entry("c1", d, d.raw or "", RuntimeError("x"), 30.0, False) == "retry"
    # The failure keeps the entry pending to c1 while it backs off; the run's lease is over.
    assert await scripts.extend("c1", [d]) == [False]
