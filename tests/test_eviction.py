"""Redis eviction (issue 13, finding 3): a Redis that may evict keys is refused at start
(exit 2) unless REDIS_ALLOW_EVICTION=1; what eviction does anyway never goes silent: a
job whose record is gone is dead-lettered (RecordMissing) when its entry is read or
reclaimed, or when the walk over waiting jobs meets it; a waiting job whose entry is
gone is queued again, logged and counted. Evictions are played by deleting the keys a
real eviction drops, so the outcome is exact."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable

import pytest
from redis.asyncio import Redis
from redis_server import RedisServerFactory
from test_cli import Run, one_line_error, tgjobs  # noqa: F401 (fixture)

from cli.common import EXIT_USAGE
from cli.embedded_redis import free_port
from config import Settings
from streams import JobContext, Producer, QueueAdmin, QueueWorker, metrics
from streams.durability import read_durability
from streams.keys import GROUP, QueueKeys
from streams.scripts import QueueScripts, Scripts

Q = "jobs"


async def drain(settings: Settings, seen: list[int]) -> None:
    async def handler(ctx: JobContext) -> None:
        seen.append(ctx.data["n"])

    await asyncio.wait_for(QueueWorker(settings, Q, handler).run(burst=True), 20)


def test_a_redis_that_evicts_is_refused_at_start_unless_allowed(
        redis_server_factory: RedisServerFactory, tgjobs: Run) -> None:
    server = redis_server_factory(appendonly=False, extra_args=["--maxmemory-policy", "allkeys-lru", "--save", ""])
    env = {"REDIS_URL": server.url}
    line = one_line_error(tgjobs("workers", "--burst", "--queues", "research", env=env), EXIT_USAGE)
    assert "maxmemory-policy is allkeys-lru" in line and "maxmemory-policy noeviction" in line
    one_line_error(tgjobs("api", "--port", str(free_port()), env=env), EXIT_USAGE)

    allowed = tgjobs("workers", "--burst", "--queues", "research", env={**env, "REDIS_ALLOW_EVICTION": "1"})
    assert allowed.returncode == 0, allowed.stderr
    assert "REDIS_ALLOW_EVICTION=1" in allowed.stderr and "allkeys-lru" in allowed.stderr

    report = json.loads(tgjobs("health", "--json", env=env).stdout)["persistence"]
    assert (report["appendonly"], report["appendfsync"], report["maxmemoryPolicy"]) == ("no", "everysec", "allkeys-lru")
    assert any("maxmemory-policy" in w for w in report["warnings"])
    assert any("persists nothing" in w for w in report["warnings"])


async def test_persistence_is_reported(redis_server_factory: RedisServerFactory) -> None:
    server = redis_server_factory(appendonly=True, extra_args=["--appendfsync", "always"])
    client = Redis.from_url(server.url, decode_responses=True)
    try:
        report = (await read_durability(client)).as_dict()
    finally:
        await client.aclose()
    assert report == {"appendonly": "yes", "appendfsync": "always", "maxmemoryPolicy": "noeviction", "warnings": []}


async def test_a_job_whose_record_is_gone_is_dead_lettered_when_its_entry_is_read(
        engine_redis: Redis, make_settings: Callable[..., Settings]) -> None:
    settings = make_settings()
    producer = Producer(engine_redis, settings)
    jobs = [await producer.add(Q, {"n": n}) for n in range(3)]
    keys = QueueKeys(settings.key_prefix, Q)
    await engine_redis.delete(keys.job(jobs[1].id))  # evicted
    seen: list[int] = []
    await drain(settings, seen)
    assert seen == [0, 2]
    (letter,) = await QueueAdmin(engine_redis, settings).dead_letters(Q)
    assert (letter.job_id, letter.error_type) == (jobs[1].id, "RecordMissing")
    assert "maxmemory-policy" in letter.error
    assert (await QueueAdmin(engine_redis, settings).status(Q)).failed_total == 1


async def test_a_running_job_whose_record_is_gone_is_dead_lettered_at_reclaim(
        engine_redis: Redis, make_settings: Callable[..., Settings]) -> None:
    settings = make_settings(jobs={"lock_timeout": 0.2})
    scripts = QueueScripts(Scripts(engine_redis), settings, Q)
    for lane in scripts.keys.lanes:
        await engine_redis.xgroup_create(lane, GROUP, id="0", mkstream=True)
    job = await Producer(engine_redis, settings).add(Q, {"n": 1})
    assert len((await scripts.read("died", 10)).jobs) == 1  # read, then its worker dies
    await engine_redis.delete(scripts.keys.job(job.id))
    await asyncio.sleep(0.3)
    page = await scripts.reclaim("other", 10)
    assert (page.jobs, page.settled) == ([], 1)
    (letter,) = await QueueAdmin(engine_redis, settings).dead_letters(Q)
    assert (letter.job_id, letter.error_type) == (job.id, "RecordMissing")
    assert await engine_redis.xpending(scripts.keys.lane("normal"), GROUP) == \
        {"pending": 0, "min": None, "max": None, "consumers": []}


async def test_waiting_jobs_without_a_readable_entry_are_queued_again_and_counted(
        engine_redis: Redis, make_settings: Callable[..., Settings], caplog: pytest.LogCaptureFixture) -> None:
    settings = make_settings()
    producer = Producer(engine_redis, settings)
    keys = QueueKeys(settings.key_prefix, Q)
    high = await producer.add(Q, {"n": 0}, priority="high")
    jobs = [await producer.add(Q, {"n": n}) for n in range(1, 4)]
    await engine_redis.delete(keys.lane("high"))  # a whole lane evicted, its group with it
    entry = await engine_redis.hget(keys.job(jobs[0].id), "entry")
    await engine_redis.xdel(keys.lane("normal"), entry)  # one entry gone
    await engine_redis.delete(keys.job(jobs[1].id))  # one record gone
    before = metrics.REQUEUED.labels(Q)._value.get()
    seen: list[int] = []
    with caplog.at_level(logging.WARNING, "streams.worker"):
        await drain(settings, seen)
    assert sorted(seen) == [0, 1, 3]
    assert metrics.REQUEUED.labels(Q)._value.get() - before == 2
    assert high.id in caplog.text and jobs[0].id in caplog.text and "queued again" in caplog.text
    (letter,) = await QueueAdmin(engine_redis, settings).dead_letters(Q)
    assert (letter.job_id, letter.error_type) == (jobs[1].id, "RecordMissing")
    status = await QueueAdmin(engine_redis, settings).status(Q)
    assert (status.counts["waiting"], status.counts["completed"], status.failed_total) == (0, 3, 1)
