"""Real worker processes against real Redis: SIGKILL mid-batch, two workers sharing one
rate limit, SIGTERM inside and past the grace period, a poison job that kills every
worker, a Redis crash and restart (AOF), and a worker started before Redis exists.

Workers are `tests/worker_proc.py` subprocesses. Its handler records every start in
`<prefix>:test:starts` ("<job id> <server ms>") and one effect per job id with SET NX
on `<prefix>:test:effect:<job id>`, so runs and effects can be counted apart.
Nothing here sleeps to wait for something: `eventually` polls a condition to a deadline.
"""

from __future__ import annotations

import asyncio
import inspect
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aioredis
from redis.exceptions import BusyLoadingError
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from cli.embedded_redis import EmbeddedRedis, free_port
from cli.redis_binary import RedisServerNotFound, find_redis_server
from config import Settings
from streams import JobSpec, JobState, Producer, QueueAdmin

ROOT = Path(__file__).parents[1]
WORKER_SCRIPT = ROOT / "tests" / "worker_proc.py"
SIGNALS = "jobs"  # the test queue: the signals row with job records
RESEARCH = "research"

# Redis errors a poll may meet while a server restarts; they mean "not yet".
_NOT_YET = (RedisConnectionError, RedisTimeoutError, BusyLoadingError, ConnectionResetError)


async def eventually(predicate: Callable[[], Any | Awaitable[Any]], timeout: float, *,
                     interval: float = 0.05, what: str | Callable[[], str] = "") -> Any:
    """Polls `predicate` (sync or async) until it returns something truthy, which is
    returned; fails the test after `timeout` seconds. Redis connection errors count
    as "not yet" (a server may be restarting)."""
    deadline = time.monotonic() + timeout
    last_error: BaseException | None = None
    while True:
        try:
            value = predicate()
            if inspect.isawaitable(value):
                value = await value
        except _NOT_YET as exc:
            value, last_error = None, exc
        if value:
            return value
        if time.monotonic() >= deadline:
            detail = what() if callable(what) else what
            raise AssertionError(f"not true within {timeout:g}s: {detail or predicate}"
                                 + (f" (last error: {last_error!r})" if last_error else ""))
        await asyncio.sleep(interval)


# -- worker processes ------------------------------------------------------------------


@dataclass
class Worker:
    proc: subprocess.Popen[bytes]
    log_path: Path

    @property
    def pid(self) -> int:
        return self.proc.pid

    @property
    def alive(self) -> bool:
        return self.proc.poll() is None

    def stderr(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()


SpawnWorker = Callable[..., Worker]


@pytest.fixture
def spawn(tmp_path: Path, redis_url: str, key_prefix: str) -> Iterator[SpawnWorker]:
    """Starts worker_proc.py subprocesses under this test's key prefix; every one still
    running at teardown is SIGKILLed and reaped."""
    workers: list[Worker] = []

    def start(queue: str, *flags: object, url: str | None = None,
              env: dict[str, str] | None = None) -> Worker:
        log_path = tmp_path / f"worker-{len(workers)}.log"
        with log_path.open("wb") as stderr:
            proc = subprocess.Popen(
                [sys.executable, str(WORKER_SCRIPT), url or redis_url, key_prefix, queue,
                 *map(str, flags)],
                cwd=ROOT, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=stderr,
                env={**os.environ, **(env or {})},
            )
        worker = Worker(proc, log_path)
        workers.append(worker)
        return worker

    try:
        yield start
    finally:
        for worker in workers:
            worker.kill()


def worker_logs(*workers: Worker) -> str:
    return "\n".join(f"--- worker {w.pid} (exit {w.proc.poll()}):\n{w.stderr()[-3000:]}"
                     for w in workers)


async def wait_exit(worker: Worker, timeout: float) -> int:
    await eventually(lambda: not worker.alive, timeout,
                     what=lambda: f"worker {worker.pid} to exit\n{worker_logs(worker)}")
    return worker.proc.returncode


# -- what the workers did ----------------------------------------------------------------


async def add_jobs(client: aioredis.Redis, settings: Settings, queue: str,
                   datas: Sequence[Any]) -> list[str]:
    added = await Producer(client, settings).add_many(queue, [JobSpec(d) for d in datas])
    assert all(a.created for a in added)
    return [a.id for a in added]


async def effect_ids(client: aioredis.Redis, prefix: str) -> set[str]:
    """Job ids with an effect key (SCAN: fine in tests, never in the engine)."""
    head = f"{prefix}:test:effect:"
    return {key[len(head):] async for key in client.scan_iter(match=head + "*", count=1000)}


async def starts(client: aioredis.Redis, prefix: str) -> list[tuple[str, int]]:
    """Every handler start, oldest first: (job id, server time ms)."""
    rows = await client.lrange(f"{prefix}:test:starts", 0, -1)
    return [(job_id, int(ms)) for job_id, ms in (row.split() for row in rows)]


async def counts(admin: QueueAdmin, queue: str) -> dict[str, int]:
    return (await admin.status(queue)).counts


def assert_recovered(worker: Worker) -> None:
    """The worker logged the outage, and the last outage line says it is over."""
    lines = [line for line in worker.stderr().splitlines()
             if "Redis unavailable" in line or "Redis reachable again" in line]
    assert lines and "Redis unavailable" in lines[0], worker_logs(worker)
    assert "Redis reachable again" in lines[-1], worker_logs(worker)


def most_in_window(times_ms: Sequence[int], window_ms: int) -> int:
    """The largest number of `times_ms` inside any half-open window [t, t + window_ms)."""
    ordered, best, lo = sorted(times_ms), 0, 0
    for hi, t in enumerate(ordered):
        while t - ordered[lo] >= window_ms:
            lo += 1
        best = max(best, hi - lo + 1)
    return best


# -- 1. SIGKILL mid-batch ---------------------------------------------------------------


async def test_sigkill_mid_batch_loses_nothing_and_each_effect_happens_once(
        engine_redis: aioredis.Redis, key_prefix: str, make_settings: Callable[..., Settings],
        spawn: SpawnWorker) -> None:
    settings = make_settings()
    admin = QueueAdmin(engine_redis, settings)
    ids = await add_jobs(engine_redis, settings, SIGNALS, [{"sleep": 0.05, "n": i} for i in range(200)])
    # Keep every completed record (100 by default) so counts are exact.
    flags = ("--lock-timeout", 1, "--concurrency", 20, "--keep-completed", 1000)

    a = spawn(SIGNALS, *flags)

    async def a_busy_mid_run() -> bool:
        """At least 30 done, and a handler started under 25 ms ago (server clock) without
        its effect yet: a 50 ms job that cannot finish before the SIGKILL that follows."""
        done = await effect_ids(engine_redis, key_prefix)
        if not 30 <= len(done) < 200:
            return False
        seconds, micros = await engine_redis.time()
        now_ms = seconds * 1000 + micros // 1000
        fresh = [j for j, ms in await starts(engine_redis, key_prefix)
                 if j not in done and now_ms - ms < 25]
        return bool(fresh) and (await counts(admin, SIGNALS))["active"] > 0

    await eventually(a_busy_mid_run, 30, interval=0.005, what=lambda: worker_logs(a))
    a.kill()  # SIGKILL while jobs are visibly in flight
    assert a.proc.returncode == -signal.SIGKILL
    after_kill = await counts(admin, SIGNALS)
    assert after_kill["active"] > 0 and after_kill["completed"] < 200, after_kill

    b = spawn(SIGNALS, *flags)

    async def all_completed() -> bool:
        return (await counts(admin, SIGNALS))["completed"] == 200

    await eventually(all_completed, 60, what=lambda: worker_logs(a, b))

    status = await admin.status(SIGNALS)
    assert status.counts == {"waiting": 0, "active": 0, "delayed": 0, "completed": 200,
                             "failed": 0, "paused": 0}
    assert status.pending == 0 and status.dead == 0
    # Exactly one effect per job: nothing lost, nothing doubled in effect.
    assert await effect_ids(engine_redis, key_prefix) == set(ids)

    runs = Counter(job_id for job_id, _ in await starts(engine_redis, key_prefix))
    assert set(runs) == set(ids)
    rerun = [job_id for job_id, n in runs.items() if n > 1]
    assert rerun, "no job was started twice: nothing was reclaimed from the killed worker"
    for job_id in rerun:
        job = await admin.job(job_id)
        # Redelivered after a crash, not retried after a failure.
        assert job.state is JobState.COMPLETED and job.stalls >= 1 and job.errorType is None, job
    # Both workers completed jobs; the reruns were completed by B.
    pids = {(await admin.job(job_id)).returnvalue["pid"] for job_id in ids}
    assert pids == {str(a.pid), str(b.pid)}
    for job_id in rerun:
        assert (await admin.job(job_id)).returnvalue == {"pid": str(b.pid)}
    assert b.alive


# -- 2. one global rate limit, two processes ----------------------------------------------


async def test_two_worker_processes_respect_one_global_rate_limit(
        engine_redis: aioredis.Redis, key_prefix: str, make_settings: Callable[..., Settings],
        spawn: SpawnWorker) -> None:
    settings = make_settings()
    admin = QueueAdmin(engine_redis, settings)
    flags = ("--rate", "5/1s", "--concurrency", 10, "--lock-timeout", 5)
    workers = [spawn(RESEARCH, *flags), spawn(RESEARCH, *flags)]
    # Both are up (imports done, run_workers entered) before any job exists.
    await eventually(lambda: all("consuming research" in w.stderr() for w in workers), 30,
                     what=lambda: worker_logs(*workers))

    began = time.monotonic()
    ids = await add_jobs(engine_redis, settings, RESEARCH, [{"n": i} for i in range(20)])

    async def all_completed() -> bool:
        return (await counts(admin, RESEARCH))["completed"] == 20

    await eventually(all_completed, 45, what=lambda: worker_logs(*workers))
    elapsed = time.monotonic() - began

    jobs = [await admin.job(job_id) for job_id in ids]
    # processedAt is the server time at which the read took the job's permit: the
    # limiter's own clock. No 1000 ms window may hold more than 5 of them.
    permits = [job.processedAt for job in jobs]
    assert all(p is not None for p in permits)
    assert most_in_window(permits, 1000) <= 5, sorted(permits)
    # 20 permits at 5 per second: batches at 0, 1, 2 and 3 s at the earliest.
    assert max(permits) - min(permits) >= 3000, sorted(permits)
    assert elapsed >= 2.5, elapsed

    # The handler's own start times trail their permits by a little scheduling jitter,
    # so a window placed exactly at 1000 ms could straddle two batches; allow 250 ms.
    run = await starts(engine_redis, key_prefix)
    assert sorted(job_id for job_id, _ in run) == sorted(ids)  # each ran once
    assert most_in_window([ms for _, ms in run], 1000 - 250) <= 5, run

    pids = {job.returnvalue["pid"] for job in jobs}
    assert pids <= {str(w.pid) for w in workers}
    if len(pids) < 2:  # one worker may win every race; not a limiter failure
        print(f"note: one worker ran all 20 jobs ({pids})")
    assert all(w.alive for w in workers)


# -- 3. SIGTERM within the grace period --------------------------------------------------


async def test_sigterm_lets_the_running_job_finish_and_exits_0(
        engine_redis: aioredis.Redis, key_prefix: str, make_settings: Callable[..., Settings],
        spawn: SpawnWorker) -> None:
    settings = make_settings()
    admin = QueueAdmin(engine_redis, settings)
    [job_id] = await add_jobs(engine_redis, settings, SIGNALS, [{"sleep": 1.5}])
    w = spawn(SIGNALS, "--grace", 10)

    async def running() -> bool:
        started = [j for j, _ in await starts(engine_redis, key_prefix)] == [job_id]
        return started and (await counts(admin, SIGNALS))["active"] == 1

    await eventually(running, 30, interval=0.02, what=lambda: worker_logs(w))
    signalled = time.monotonic()
    w.proc.send_signal(signal.SIGTERM)
    assert await wait_exit(w, 15) == 0, worker_logs(w)
    assert time.monotonic() - signalled < 10

    job = await admin.job(job_id)
    assert job.state is JobState.COMPLETED, job
    assert job.returnvalue == {"pid": str(w.pid)}
    status = await admin.status(SIGNALS)
    assert status.counts["active"] == 0 and status.counts["completed"] == 1
    assert status.pending == 0
    assert "received SIGTERM" in w.stderr()
    assert await effect_ids(engine_redis, key_prefix) == {job_id}


# -- 4. SIGTERM past the grace period ----------------------------------------------------


async def test_sigterm_past_grace_leaves_the_job_pending_for_another_worker(
        engine_redis: aioredis.Redis, key_prefix: str, make_settings: Callable[..., Settings],
        spawn: SpawnWorker) -> None:
    settings = make_settings()
    admin = QueueAdmin(engine_redis, settings)
    [job_id] = await add_jobs(engine_redis, settings, SIGNALS, [{"sleep": 30}])
    flags = ("--grace", 0.5, "--lock-timeout", 1)
    a = spawn(SIGNALS, *flags)

    async def started_times(n: int) -> bool:
        return [j for j, _ in await starts(engine_redis, key_prefix)] == [job_id] * n

    await eventually(lambda: started_times(1), 30, interval=0.02, what=lambda: worker_logs(a))
    signalled = time.monotonic()
    a.proc.send_signal(signal.SIGTERM)
    assert await wait_exit(a, 15) == 0, worker_logs(a)
    assert time.monotonic() - signalled < 6  # did not wait out the 30 s job
    assert "did not finish within the grace period" in a.stderr()

    # Not completed, not failed: still active, its entry pending to A's consumer.
    job = await admin.job(job_id)
    assert job.state is JobState.ACTIVE and job.stalls == 0 and job.attemptsMade == 0, job
    status = await admin.status(SIGNALS)
    assert status.pending == 1 and status.counts["active"] == 1, status
    assert status.counts["completed"] == 0 and status.counts["failed"] == 0
    assert not await effect_ids(engine_redis, key_prefix)

    b = spawn(SIGNALS, *flags)

    async def reclaimed_by_b() -> bool:
        job = await admin.job(job_id)
        return job.state is JobState.ACTIVE and job.stalls == 1 and await started_times(2)

    await eventually(reclaimed_by_b, 30, what=lambda: worker_logs(a, b))
    status = await admin.status(SIGNALS)
    assert status.pending == 1
    holders = [c.name for lane in status.lanes for c in lane.consumers if c.pending]
    assert len(holders) == 1 and f"-{b.pid}-" in holders[0], holders
    job = await admin.job(job_id)
    assert job.attemptsMade == 0 and job.errorType is None  # a crash redelivery, not a failure
    b.kill()


# -- 5. a poison job ---------------------------------------------------------------------


async def test_a_job_that_kills_every_worker_ends_in_the_dead_letter_stream(
        engine_redis: aioredis.Redis, key_prefix: str, make_settings: Callable[..., Settings],
        spawn: SpawnWorker) -> None:
    settings = make_settings()
    admin = QueueAdmin(engine_redis, settings)
    max_stalls = settings.policy(SIGNALS).max_stalls
    assert max_stalls == 3
    [job_id] = await add_jobs(engine_redis, settings, SIGNALS, [{"kill": True}])

    deaths: list[Worker] = []
    for _ in range(8):
        w = spawn(SIGNALS, "--lock-timeout", 0.5)

        async def died_or_failed(w: Worker = w) -> str | None:
            if (await admin.job(job_id)).state is JobState.FAILED:
                return "failed"
            return None if w.alive else "died"

        outcome = await eventually(died_or_failed, 30, what=lambda: worker_logs(*deaths, w))
        if outcome == "failed":
            assert w.alive, worker_logs(w)  # the worker that dead-lettered it did not run it
            break
        assert w.proc.returncode == -signal.SIGKILL, worker_logs(w)
        deaths.append(w)
    else:
        pytest.fail(f"the job was not dead-lettered after 8 workers\n{worker_logs(*deaths)}")

    # One run per allowed delivery: the first plus max_stalls redeliveries; the next
    # reclaim finds stalls > max_stalls and dead-letters without running it.
    assert len(deaths) == max_stalls + 1
    assert [j for j, _ in await starts(engine_redis, key_prefix)] == [job_id] * (max_stalls + 1)

    job = await admin.job(job_id)
    assert job.state is JobState.FAILED
    assert job.attemptsMade == 0  # it never raised: no handler attempt was used up
    assert job.stalls == max_stalls + 1
    [letter] = await admin.dead_letters(SIGNALS)
    assert letter.job_id == job_id and letter.error_type == "Stalled", letter
    assert letter.stalls == max_stalls + 1 and letter.attempts == 0, letter
    assert letter.data == {"kill": True}
    status = await admin.status(SIGNALS)
    assert status.counts["failed"] == 1 and status.counts["active"] == 0
    assert status.pending == 0 and status.dead == 1


# -- 6. Redis crash and restart (AOF) ------------------------------------------------------


async def test_worker_rides_out_a_redis_crash_and_restart_with_aof(
        key_prefix: str, make_settings: Callable[..., Settings], spawn: SpawnWorker,
        redis_server_factory: Callable[..., EmbeddedRedis]) -> None:
    server = redis_server_factory(appendonly=True)
    client = aioredis.Redis.from_url(server.url, decode_responses=True)
    try:
        settings = make_settings()  # only its prefix and policies matter; the client is private
        admin = QueueAdmin(client, settings)
        ids = await add_jobs(client, settings, SIGNALS, [{"sleep": 0.02, "n": i} for i in range(100)])
        # Concurrency 2 keeps the run long enough (>= 1 s) to crash Redis in its middle.
        w = spawn(SIGNALS, "--lock-timeout", 2, "--concurrency", 2, url=server.url)

        async def some_done() -> int:
            done = len(await effect_ids(client, key_prefix))
            return done if done >= 20 else 0

        done_before_crash = await eventually(some_done, 30, interval=0.01, what=lambda: worker_logs(w))
        # 80+ jobs left at 2 x 20 ms each: the crash (milliseconds from now) lands mid-run.
        assert done_before_crash <= 50, done_before_crash
        # SIGKILL, as a crash. appendfsync everysec only risks what the kernel has not
        # yet written on a machine crash: Redis write()s the AOF before replying, so a
        # killed process loses no acknowledged write and exact counts hold.
        server.kill()
        await eventually(lambda: "Redis unavailable" in w.stderr(), 20, what=lambda: worker_logs(w))
        # Keep Redis down for a while: the outage itself, not a wait for a condition.
        await asyncio.sleep(1.0)
        assert w.alive, worker_logs(w)
        await asyncio.to_thread(server.restart)

        async def all_completed() -> bool:
            return (await counts(admin, SIGNALS))["completed"] == 100

        await eventually(all_completed, 60, what=lambda: worker_logs(w))
        status = await admin.status(SIGNALS)
        assert status.counts == {"waiting": 0, "active": 0, "delayed": 0, "completed": 100,
                                 "failed": 0, "paused": 0}
        assert status.pending == 0 and status.dead == 0
        assert await effect_ids(client, key_prefix) == set(ids)
        assert {j for j, _ in await starts(client, key_prefix)} == set(ids)

        assert w.alive, worker_logs(w)  # it rode out the outage
        assert_recovered(w)
    finally:
        await client.aclose()


# -- 7. a worker started before Redis ------------------------------------------------------


async def test_worker_started_before_redis_exists_waits_and_then_works(
        tmp_path: Path, key_prefix: str, make_settings: Callable[..., Settings],
        spawn: SpawnWorker) -> None:
    try:
        find_redis_server()
    except RedisServerNotFound as err:
        pytest.skip(str(err))
    port = free_port()
    w = spawn(SIGNALS, url=f"redis://127.0.0.1:{port}/0")
    # The worker is up and has found nothing to talk to.
    await eventually(lambda: "Redis unavailable" in w.stderr(), 30, what=lambda: worker_logs(w))
    assert w.alive, worker_logs(w)

    server = EmbeddedRedis(data_dir=tmp_path / "r", port=port, appendonly=False)
    client: aioredis.Redis | None = None
    try:
        await asyncio.to_thread(server.start)
        client = aioredis.Redis.from_url(server.url, decode_responses=True)
        settings = make_settings()
        admin = QueueAdmin(client, settings)
        ids = await add_jobs(client, settings, SIGNALS, [{"n": i} for i in range(10)])

        async def all_completed() -> bool:
            return (await counts(admin, SIGNALS))["completed"] == 10

        await eventually(all_completed, 45, what=lambda: worker_logs(w))
        assert await effect_ids(client, key_prefix) == set(ids)
        assert {(await admin.job(j)).returnvalue["pid"] for j in ids} == {str(w.pid)}
        assert w.alive, worker_logs(w)
        assert_recovered(w)
    finally:
        if client is not None:
            await client.aclose()
        w.kill()
        await asyncio.to_thread(server.stop)
