"""Sentinel: one primary, one replica, three sentinels (cli/embedded_sentinel.py), every
one password-protected. `tgjobs up` (the API and a worker) and a second `tgjobs workers`
find the primary through the sentinels; the primary is SIGKILLed while jobs flow; the
sentinels promote the replica, and work resumes without restarting anything: the API
answers 503 (never 500) meanwhile, and every job it acknowledged, before or after the
kill, completes. `tgjobs status` and the sync SDK then reach the new primary too.
"""

from __future__ import annotations

import asyncio
import itertools
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import pytest
from redis_server import on_cluster
from test_cli import clean_env
from test_processes import eventually

from cli.embedded_redis import free_port
from cli.embedded_sentinel import EmbeddedSentinel
from cli.redis_binary import RedisServerNotFound, find_redis_server
from config import Settings
from streams.signals_sdk import SyncSignalPublisher

pytestmark = pytest.mark.skipif(on_cluster(), reason="starts its own servers: runs once, in the single-server run")

ROOT = Path(__file__).parents[1]
PRIMARY_PASSWORD = "primary pw"
SENTINEL_PASSWORD = "sentinel pw"  # not the primary's: each must go where it belongs
MASTER = "jobs-primary"


@pytest.fixture
def deployment(tmp_path: Path) -> Iterator[EmbeddedSentinel]:
    try:
        find_redis_server()
    except RedisServerNotFound as err:
        pytest.skip(str(err))
    with EmbeddedSentinel(MASTER, data_dir=tmp_path / "sentinel", password=PRIMARY_PASSWORD,
                          sentinel_password=SENTINEL_PASSWORD) as running:
        yield running


@pytest.fixture
def env(deployment: EmbeddedSentinel, key_prefix: str) -> dict[str, str]:
    return {**clean_env(), "REDIS_SENTINELS": deployment.addresses, "REDIS_SENTINEL_MASTER": MASTER,
            "REDIS_SENTINEL_PASSWORD": SENTINEL_PASSWORD, "REDIS_PASSWORD": PRIMARY_PASSWORD,
            "KEY_PREFIX": key_prefix, "READ_BLOCK": "1s", "WORKER_HEARTBEAT": "500ms",
            # every job stays readable by id, so each one's end can be checked
            "QUEUES__SIGNALS__KEEP_COMPLETED": "100000"}


@dataclass
class Process:
    proc: subprocess.Popen[bytes]
    log_path: Path

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


@pytest.fixture
def tgjobs(tmp_path: Path, env: dict[str, str]) -> Iterator[list[Process]]:
    """`tgjobs ARGS...` processes started by `start(...)`, killed at teardown."""
    started: list[Process] = []
    yield started
    for process in started:
        if process.proc.poll() is None:
            process.proc.kill()
        process.proc.wait()


def start(started: list[Process], tmp_path: Path, env: dict[str, str], *args: str) -> Process:
    log_path = tmp_path / f"{args[0]}-{len(started)}.log"
    with log_path.open("wb") as stderr:
        proc = subprocess.Popen([sys.executable, "-m", "cli.main", *args], cwd=ROOT, env=env,
                                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=stderr)
    started.append(Process(proc, log_path))
    return started[-1]


@dataclass
class Producer:
    """Adds signal jobs through the API one after another; one answered 503 is sent
    again until the API acknowledges it (the signals processor records a signalId once)."""

    session: aiohttp.ClientSession
    api: str
    statuses: Counter[int] = field(default_factory=Counter)
    acknowledged: dict[str, float] = field(default_factory=dict)  # job id -> when (monotonic)

    async def run(self, stop: asyncio.Event) -> None:
        for n in itertools.count():
            if stop.is_set():
                return
            while not await self.add(n):
                await asyncio.sleep(0.05)
            await asyncio.sleep(0.01)

    async def add(self, n: int) -> bool:
        body = {"type": "signal", "data": {"signalId": f"sig_{n}", "signalType": "Email Open",
                                           "companyId": f"comp_{n % 7}", "data": {}}}
        async with self.session.post(f"{self.api}/api/jobs", json=body) as answer:
            self.statuses[answer.status] += 1
            if answer.status == 503:
                return False
            assert answer.status == 201, await answer.text()
            self.acknowledged[(await answer.json())["id"]] = time.monotonic()
            return True

    async def read(self, stop: asyncio.Event) -> None:
        """Counts of every queue, over and over: the read path's answers."""
        while not stop.is_set():
            async with self.session.get(f"{self.api}/api/jobs") as answer:
                self.statuses[answer.status] += 1
            await asyncio.sleep(0.05)

    async def unfinished(self) -> list[str]:
        left = []
        for job_id in self.acknowledged:
            async with self.session.get(f"{self.api}/api/jobs/{job_id}") as answer:
                if answer.status != 200 or (await answer.json())["status"] != "completed":
                    left.append(job_id)
        return left


async def test_work_resumes_after_the_primary_is_killed(
        deployment: EmbeddedSentinel, env: dict[str, str], tgjobs: list[Process], tmp_path: Path) -> None:
    port = free_port()
    api = f"http://127.0.0.1:{port}"
    up = start(tgjobs, tmp_path, env, "up", "--host", "127.0.0.1", "--port", str(port), "--queues", "signals")
    workers = start(tgjobs, tmp_path, env, "workers", "--queues", "signals")
    logs = lambda: "\n".join(f"--- {p.log_path.name}:\n{p.log()[-4000:]}" for p in tgjobs)  # noqa: E731

    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as session:
        producer = Producer(session, api)

        async def ready() -> bool:
            try:
                async with session.get(f"{api}/readyz") as answer:
                    return answer.status == 200
            except aiohttp.ClientConnectionError:
                return False

        await eventually(ready, 30, interval=0.1, what=logs)
        stop = asyncio.Event()
        flows = [asyncio.create_task(producer.run(stop)), asyncio.create_task(producer.read(stop))]
        try:
            await eventually(lambda: len(producer.acknowledged) >= 30, 20, what=logs)
            old = deployment.primary()
            old.kill()
            killed_at = time.monotonic()
            new = await asyncio.to_thread(deployment.wait_failover, old)
            assert new is not old
            failover_s = time.monotonic() - killed_at
            await eventually(lambda: sum(at > killed_at for at in producer.acknowledged.values()) >= 30,
                             30, what=lambda: f"{producer.statuses}\n{logs()}")
        finally:
            stop.set()
            await asyncio.gather(*flows)

        left = await eventually(lambda: _all_done(producer), 30, interval=0.2,
                                what=lambda: f"every acknowledged job completed\n{logs()}")
        assert left is True
        print(f"failover took {failover_s:.1f}s; answers {dict(producer.statuses)}; "
              f"{len(producer.acknowledged)} jobs acknowledged and completed")

        # The API never answered 500; it answered 503 while no primary was reachable.
        assert set(producer.statuses) <= {200, 201, 503}, (producer.statuses, logs())
        assert producer.statuses[503] > 0, producer.statuses
        # Nobody was restarted: both processes still run, and their workers rode the outage out.
        assert up.proc.poll() is None and workers.proc.poll() is None, logs()
        for process in (up, workers):
            assert "Redis reachable again" in process.log(), logs()
        assert PRIMARY_PASSWORD not in logs() and SENTINEL_PASSWORD not in logs()

        # The CLI and the sync SDK find the new primary through the sentinels.
        status = subprocess.run([sys.executable, "-m", "cli.main", "status", "--json"], cwd=ROOT, env=env,
                                capture_output=True, text=True, timeout=60)
        assert status.returncode == 0, status.stderr
        assert '"signals"' in status.stdout
        settings = Settings(**{k.lower(): v for k, v in env.items() if k.lower() in Settings.model_fields})
        publisher = SyncSignalPublisher.connect(settings, queue="signals")
        try:
            job_id = publisher.publish_signal({"signalId": "sig_sdk", "signalType": "Email Open",
                                               "companyId": "comp_1", "data": {}})
        finally:
            publisher.close()
        producer.acknowledged = {job_id: time.monotonic()}
        assert await eventually(lambda: _all_done(producer), 15, interval=0.2, what=logs) is True


async def _all_done(producer: Producer) -> bool:
    return not await producer.unfinished()
