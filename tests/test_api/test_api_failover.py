"""Acknowledged means kept: REDIS_WAIT_REPLICAS makes an acknowledged write wait for
replicas, a write they do not confirm is a 503 (never a silent success), and a Redis
Cluster master killed while jobs flow loses no acknowledged job; the API and the worker
ride the failover out without a restart, answering 503 (never 500) meanwhile."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import time
from collections.abc import Callable, Iterator
from typing import Any

from conftest import TOKENS, Api, StartApi
from redis.asyncio import RedisCluster

from cli.embedded_cluster import EmbeddedCluster
from cli.embedded_redis import LOOPBACK
from config import Settings
from redis_server import RedisServerFactory
from streams import JobContext, QueueWorker
from streams.keys import QueueKeys
from streams.replication import ReplicaWait

QUEUE = "research"
POLICY = {"rate_limit": "none", "attempts": 5, "backoff_delay": 0.1, "lock_timeout": 2, "keep_completed": 100_000}
BODY = {"type": "research", "data": {"companyId": "comp_1", "companyName": "Acme"}}


@contextlib.contextmanager
def stopped(pid: int) -> Iterator[None]:
    """The process frozen (SIGSTOP) for the block: alive, but answering nothing."""
    os.kill(pid, signal.SIGSTOP)
    try:
        yield
    finally:
        os.kill(pid, signal.SIGCONT)


async def test_a_write_the_replicas_do_not_confirm_is_a_503_not_a_success(
        redis_server_factory: RedisServerFactory, start_api: StartApi, key_prefix: str) -> None:
    primary = redis_server_factory(appendonly=False)
    replica = redis_server_factory(appendonly=False, extra_args=("--replicaof", LOOPBACK, str(primary.port)))
    settings = Settings(redis_url=primary.url, key_prefix=key_prefix, api_tokens=TOKENS, queues={QUEUE: POLICY},
                        redis_wait_replicas=1, redis_wait_timeout=0.3)
    api = await start_api(settings)
    deadline, posts = time.monotonic() + 10, 1
    while (status := (await api.post("/api/jobs", BODY))[0]) != 201:  # until the replica has synced
        assert status == 503 and time.monotonic() < deadline
        await asyncio.sleep(0.1)
        posts += 1

    assert replica.pid is not None
    with stopped(replica.pid):
        status, answer = await api.post("/api/jobs", BODY)
        assert status == 503, answer
        assert "0 of the 1 replicas" in answer["message"]
    assert (await api.post("/api/jobs", BODY))[0] == 201

    # The worker's completions wait too, and go through once the replica answers.
    done: list[str] = []

    async def handle(ctx: JobContext) -> None:
        done.append(ctx.id)

    await asyncio.wait_for(QueueWorker(settings, QUEUE, handle).run(burst=True), 30)
    # A refused write was made on the primary all the same: it runs too.
    assert len(set(done)) == posts + 2


def effect_key(prefix: str) -> str:
    return f"{{{prefix}:effects}}:done"


async def test_a_cluster_master_killed_while_jobs_flow_loses_no_acknowledged_job(
        tmp_path: Any, start_api: StartApi, key_prefix: str) -> None:
    with EmbeddedCluster(3, 1, data_dir=tmp_path / "cluster", node_timeout_ms=2000) as cluster:
        settings = Settings(redis_url=cluster.url, key_prefix=key_prefix, api_tokens=TOKENS, read_block=1, shutdown_grace=5,
                            queues={QUEUE: POLICY}, redis_wait_replicas=1, redis_wait_timeout=1)
        api = await start_api(settings)
        effects = RedisCluster.from_url(cluster.url, decode_responses=True)
        wait = ReplicaWait(effects, settings)

        async def handle(ctx: JobContext) -> None:  # the job's effect, kept once per job id
            await wait.execute(effects.pipeline(transaction=False).sadd(effect_key(key_prefix), ctx.id),
                               [effect_key(key_prefix)])

        worker = QueueWorker(settings, QUEUE, handle)
        working = asyncio.create_task(worker.run())
        try:
            master = cluster.master_of(QueueKeys(key_prefix, QUEUE).tag)
            # Its replica takes over; with no replica left, writes wait in vain (503) until the
            # killed node is back, as the new master's replica.
            acked, statuses = await produce(api, seconds=14, events={2: master.kill, 7: master.start})
            assert 500 not in statuses and statuses.get(201), statuses
            assert acked["after"], "no job was acknowledged after the failover: the API did not resume"
            wanted = set(acked["before"]) | set(acked["after"])
            done = await until(lambda: effects.smembers(effect_key(key_prefix)), wanted.issubset, 60)
            assert wanted <= done, f"acknowledged but never run: {sorted(wanted - done)[:5]}"
            # Its effect is made before its completion is recorded (and waited for): poll.
            for job_id in sorted(wanted)[:: max(len(wanted) // 20, 1)]:
                job = await until(lambda: job_state(api, job_id), lambda state: state == {"completed"}, 30)
                assert job == {"completed"}, job_id
        finally:
            worker.stop()
            await asyncio.wait_for(working, 30)
            await effects.aclose()


async def produce(api: Api, *, seconds: float, events: dict[float, Callable[[], None]]
                  ) -> tuple[dict[str, list[str]], dict[int, int]]:
    """POSTs jobs one after another for `seconds`, calling each event at its second;
    returns the acknowledged ids (before and after the first event) and how often each
    status came."""
    acked: dict[str, list[str]] = {"before": [], "after": []}
    statuses: dict[int, int] = {}
    start, due = time.monotonic(), sorted(events.items())
    while time.monotonic() - start < seconds:
        while due and time.monotonic() - start >= due[0][0]:
            due.pop(0)[1]()
        status, answer = await api.post("/api/jobs", BODY)
        statuses[status] = statuses.get(status, 0) + 1
        if status == 201:
            acked["after" if len(due) < len(events) else "before"].append(answer["id"])
        elif status == 503:
            await asyncio.sleep(0.05)
    return acked, statuses


async def job_state(api: Api, job_id: str) -> set[str]:
    status, job = await api.get(f"/api/jobs/{job_id}")
    return {job["status"]} if status == 200 else {f"HTTP {status}"}


async def until(read: Callable[[], Any], done: Callable[[Any], bool], timeout: float) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        try:
            value = set(await read())
        except Exception:  # the cluster is still settling
            value = set()
        if done(value) or time.monotonic() > deadline:
            return value
        await asyncio.sleep(0.2)

