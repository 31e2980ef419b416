"""Least-privilege Redis users (issue 13, finding 10): the lines `tgjobs redis-acl` prints
create the users; the whole flow runs as them (a producer adds jobs and signals, the
API serves, changes and reads, workers consume as a group, reclaim, fail, retry,
dead-letter, trim and register), and each is refused FLUSHALL, CONFIG, EVAL and every
key outside the prefix, from a command or from a script it loads itself."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer
from processor_support import signal
from redis.asyncio import Redis
from redis.exceptions import NoPermissionError, ResponseError
from redis_server import RedisServerFactory
from test_api.conftest import ADMIN_TOKEN, TOKENS
from test_cli import Run, ok, one_line_error, tgjobs  # noqa: F401 (fixture)

from api import create_app
from cli.common import EXIT_USAGE
from cli.processes import consume
from cli.redis_acl import ROLES, acl_setuser
from config import DEFAULT_POLICIES, Settings
from streams import JobContext, Producer, QueueAdmin, QueueWorker, SignalPublisher, UnrecoverableError
from streams.keys import GROUP, QueueKeys
from streams.scripts import QueueScripts, Scripts

PASSWORD = "s3cret-pass-for-tests"
OUTSIDE_SCRIPT = "return redis.call('SET', 'outside:key', '1')"


@pytest.fixture
async def acl_server(redis_server_factory: RedisServerFactory, key_prefix: str) -> AsyncIterator[tuple[str, Redis]]:
    """A private Redis with a user per role, made by running the lines `tgjobs redis-acl`
    prints (test_the_command_prints_the_line)."""
    server = redis_server_factory(appendonly=False)
    admin = Redis.from_url(server.url, decode_responses=True)
    for role in ROLES:
        line = acl_setuser(role, PASSWORD, role, key_prefix)
        assert await admin.execute_command(*line.split()) == "OK"
    try:
        yield server.url, admin
    finally:
        await admin.aclose()


def as_user(url: str, role: str, key_prefix: str, **overrides: Any) -> Settings:
    jobs_row = {**DEFAULT_POLICIES["signals"].model_dump(), "records": True, "attempts": 2, "backoff_delay": 0.05,
                "lock_timeout": 0.3}
    return Settings(redis_url=url, redis_username=role, redis_password=PASSWORD, key_prefix=key_prefix,
                    read_block=1, shutdown_grace=5, redis_cluster="no",
                    queues={**DEFAULT_POLICIES, "jobs": jobs_row}, **overrides)


async def test_the_whole_flow_runs_as_least_privilege_users(acl_server: tuple[str, Redis], key_prefix: str) -> None:
    url, admin = acl_server
    # Producer: jobs through add.lua, signals with raw XADDs (the SDK).
    producer_settings = as_user(url, "producer", key_prefix)
    producer_redis = Redis.from_url(producer_settings.redis_connection_url(), decode_responses=True)
    try:
        added = [await Producer(producer_redis, producer_settings).add("jobs", {"n": n}) for n in range(4)]
        await SignalPublisher(producer_redis, producer_settings, queue="signals").publish_signals(
            [signal("comp_1", "Email Open").model_dump(), signal("comp_1", "Demo Request").model_dump()])
    finally:
        await producer_redis.aclose()

    # Worker: a consumer that died holding a job, then a worker that reclaims it, completes,
    # fails, retries and dead-letters; the signals processor as `tgjobs workers` runs it.
    worker_settings = as_user(url, "worker", key_prefix)
    worker_redis = Redis.from_url(worker_settings.redis_connection_url(), decode_responses=True)
    try:
        scripts = QueueScripts(Scripts(worker_redis), worker_settings, "jobs")
        for lane in scripts.keys.lanes:
            await worker_redis.xgroup_create(lane, GROUP, id="0", mkstream=True)
        assert len((await scripts.read("died", 1)).jobs) == 1
        await asyncio.sleep(0.4)

        async def handler(ctx: JobContext) -> int:
            if ctx.data["n"] == 3:
                raise RuntimeError("fails every attempt")
            if ctx.data["n"] == 2:
                raise UnrecoverableError("bad input")
            return ctx.data["n"]

        await asyncio.wait_for(QueueWorker(worker_settings, "jobs", handler).run(burst=True), 20)
        await asyncio.wait_for(consume(worker_settings, ["signals"], burst=True), 20)
    finally:
        await worker_redis.aclose()

    # API: reads, changes (pause, resume, replay, purge), adds, audit, metrics, readiness.
    api_settings = as_user(url, "api", key_prefix, api_tokens=TOKENS)
    async with TestClient(TestServer(create_app(api_settings))) as client:
        headers = {"Authorization": f"Bearer {ADMIN_TOKEN}"}

        async def call(method: str, path: str, body: Any = None) -> Any:
            async with client.request(method, path, headers=headers, json=body) as response:
                assert response.status < 300, (method, path, response.status, await response.text())
                return await response.json() if response.content_type == "application/json" else None

        assert (await call("GET", "/readyz"))["status"] == "ready"
        assert (await call("GET", f"/api/jobs/{added[0].id}"))["status"] == "completed"
        assert (await call("GET", "/api/jobs"))["queues"]["jobs"]["failed"] == 2
        for path in ("/api/queues/jobs", "/api/queues/signals", "/api/streams", "/api/workers", "/api/audit",
                     "/api/jobs?queue=signals&state=completed", "/metrics"):
            await call("GET", path)
        await call("POST", "/api/queues/jobs", {"action": "pause"})
        await call("POST", "/api/queues/jobs", {"action": "resume"})
        letters = (await call("GET", "/api/queues/jobs/dead"))["items"]
        assert sorted(letter["errorType"] for letter in letters) == ["RuntimeError", "UnrecoverableError"]
        await call("POST", "/api/queues/jobs/dead", {"action": "replay", "ids": [letters[0]["jobId"]]})
        await call("POST", "/api/queues/jobs/dead", {"action": "purge"})
        await call("POST", "/api/jobs", {"type": "signal", "data": signal("comp_2", "Email Click").model_dump()})
        await call("DELETE", f"/api/jobs/{added[1].id}")
    status = await QueueAdmin(admin, as_user(url, "all", key_prefix)).status("signals")
    assert (status.counts["completed"], status.counts["waiting"]) == (2, 1)


@pytest.mark.parametrize("role", ["producer", "api", "worker", "all"])
async def test_each_user_is_refused_what_it_does_not_need(acl_server: tuple[str, Redis], key_prefix: str,
                                                           role: str) -> None:
    url, admin = acl_server
    settings = as_user(url, role, key_prefix)
    client = Redis.from_url(settings.redis_connection_url(), decode_responses=True)
    inside = QueueKeys(key_prefix, "jobs").meta
    await admin.set("outside:key", "0")
    refused: list[Callable[[], Any]] = [
        client.flushall, client.flushdb, lambda: client.config_get("*"), lambda: client.config_set("appendonly", "no"),
        lambda: client.get("outside:key"), lambda: client.set("outside:key", "1"), lambda: client.keys("*"),
        lambda: client.eval("return 1", 0), client.acl_list,
        lambda: client.hset("{other:jobs}:meta", "paused", "1"), lambda: client.publish("chan", "x"),
    ]
    try:
        for attempt in refused:
            with pytest.raises(NoPermissionError):
                await attempt()
        # A script it loads itself runs under its own rights: no key outside the prefix.
        sha = await client.script_load(OUTSIDE_SCRIPT)
        with pytest.raises(ResponseError, match="can't access at least one of the keys"):
            await client.evalsha(sha, 0)
        assert await client.exists(inside) == 0  # while keys of the prefix are its to use
    finally:
        await client.aclose()
    assert await admin.get("outside:key") == "0" and await admin.dbsize() > 0


def test_the_command_prints_the_line(tgjobs: Run, key_prefix: str) -> None:
    line = ok(tgjobs("redis-acl", "--user", "w1", "--password", PASSWORD, "--role", "worker")).strip()
    assert line == acl_setuser("w1", PASSWORD, "worker", key_prefix)
    assert line.startswith("ACL SETUSER w1 reset on #") and PASSWORD not in line
    assert f" ~{{{key_prefix}:* " in line and " -@all " in line and "+xreadgroup" in line


def test_bad_arguments_are_refused(tgjobs: Run) -> None:
    assert "--user" in one_line_error(tgjobs("redis-acl", "--user", "a b", "--password", "x"), EXIT_USAGE)
    assert "--password" in one_line_error(tgjobs("redis-acl", "--user", "a", "--password", ""), EXIT_USAGE)
