"""The ledger over faults (issue 13, Jepsen-style). Producers post research jobs and
signals through the API and through the SDK for a fixed time, while a nemesis SIGKILLs
workers, SIGSTOPs one past its lease and resumes it later (a zombie), restarts Redis
(SIGKILL; append-only, `appendfsync always`), flushes the script cache, and drops the
replies of chosen script calls through a proxy (tests/reply_proxy.py). Then the faults
stop, the workers drain, and a checker reads every acknowledged id and every effect and
prints one line:

    ledger: acknowledged N, completed N, dead-lettered N, lost 0, duplicated effects 0, stuck 0

acknowledged: ids a producer was given (201/202 from the API, a returned id from the
SDK); completed: research jobs whose record is `completed`, signals whose effect (the
signals processor's `seen` marker) is there; lost: acknowledged and nowhere; stuck:
still waiting or running after the drain; duplicated effects: research completions
recorded more than once (the queue's completed total against its completed records) and
signals in a company's history more than once. Lost, duplicated and stuck must be 0.

`make test` runs the short version (LEDGER_SECONDS of load); `pytest -m ledger_long`
the longer one (LEDGER_LONG_SECONDS), with more workers and faults.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import itertools
import json
import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiohttp.test_utils import TestClient, TestServer
from redis.asyncio import Redis
from redis_server import RedisServerFactory, on_cluster
from reply_proxy import ReplyDroppingProxy, reply_proxy

from api import create_app
from cli.embedded_redis import EmbeddedRedis
from config import DEFAULT_POLICIES, Settings
from processors.publish import signal_publisher
from processors.record_keys import CompanyKeys
from streams import Producer, QueueAdmin, connect
from streams.keys import QueueKeys
from streams.scripts import Scripts

ROOT = Path(__file__).resolve().parent.parent
WORKER = ROOT / "tests" / "ledger_worker.py"
LEASE_S = 1.0
COMPANIES = 12
DROPPED_SCRIPTS = ("complete", "fail", "settle_entries", "fail_entry", "read", "extend", "add")
DRAIN_TIMEOUT_S = 30.0
STOP_WAIT_S = 3.0

pytestmark = pytest.mark.skipif(on_cluster(), reason="one proxy and one restartable server stand for Redis")


@dataclass
class Ledger:
    research: list[str] = field(default_factory=list)  # acknowledged job ids
    signals: dict[str, str] = field(default_factory=dict)  # acknowledged signalId -> companyId
    refused: int = 0  # posts answered with an error: not acknowledged, not counted
    faults: collections.Counter[str] = field(default_factory=collections.Counter)


def settings_args(url: str, prefix: str) -> dict[str, Any]:
    """What every process of the test runs with (the workers get it as JSON)."""
    quick = {"lock_timeout": LEASE_S, "max_stalls": 100, "keep_completed": 1_000_000, "backoff_delay": 0.05}
    return {"redis_url": url, "key_prefix": prefix, "redis_cluster": "no", "read_block": 1, "shutdown_grace": 2,
            "queues": {**{name: row.model_dump(mode="json") for name, row in DEFAULT_POLICIES.items()},
                       "research": {**DEFAULT_POLICIES["research"].model_dump(mode="json"), **quick,
                                    "rate_limit": None, "concurrency": 8, "attempts": 5},
                       "signals": {**DEFAULT_POLICIES["signals"].model_dump(mode="json"), **quick, "batch_size": 50}}}


class Workers:
    """The worker processes; the nemesis kills, stops and resumes them."""

    def __init__(self, args: dict[str, Any], count: int) -> None:
        self.args = json.dumps(args)
        self.procs = [self._spawn() for _ in range(count)]

    def _spawn(self) -> subprocess.Popen[bytes]:
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        return subprocess.Popen([sys.executable, str(WORKER), self.args], cwd=ROOT, env=env,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def kill_one(self) -> None:
        victim = random.randrange(len(self.procs))
        self.procs[victim].kill()
        self.procs[victim].wait()
        self.procs[victim] = self._spawn()

    def stop(self) -> None:
        """After the check: SIGTERM, and SIGKILL for any still up after a few seconds."""
        for proc in self.procs:
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signal.SIGCONT)
                proc.terminate()
        deadline = time.monotonic() + STOP_WAIT_S
        for proc in self.procs:
            try:
                proc.wait(max(deadline - time.monotonic(), 0.01))
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


async def zombie(workers: Workers) -> None:
    """SIGSTOP a worker past its lease, then let it come back with its stale runs."""
    proc = random.choice(workers.procs)
    proc.send_signal(signal.SIGSTOP)
    await asyncio.sleep(LEASE_S * 2)
    with contextlib.suppress(ProcessLookupError):
        proc.send_signal(signal.SIGCONT)


async def restart_redis(server: EmbeddedRedis) -> None:
    server.kill()  # a crash: only what appendfsync always wrote survives
    await asyncio.sleep(0.2)
    await asyncio.to_thread(server.start)


async def nemesis(server: EmbeddedRedis, proxy: ReplyDroppingProxy, workers: Workers, admin_url: str,
                  ledger: Ledger, until: float, every: float) -> None:
    shas = [Scripts(Redis())[name].sha.encode() for name in DROPPED_SCRIPTS]
    actions = itertools.cycle(["kill", "drop", "zombie", "flush", "drop", "restart", "kill", "drop"])
    pending: set[asyncio.Task[None]] = set()
    while time.monotonic() < until:
        await asyncio.sleep(every)
        action = next(actions)
        ledger.faults[action] += 1
        if action == "kill":
            workers.kill_one()
        elif action == "zombie":
            pending.add(asyncio.create_task(zombie(workers)))
        elif action == "restart":
            await restart_redis(server)
        elif action == "flush":
            admin = Redis.from_url(admin_url)
            with contextlib.suppress(Exception):
                await admin.script_flush()
            await admin.aclose()
        else:
            for sha in random.sample(shas, 3):
                proxy.drop_replies_to(sha)
    await asyncio.gather(*pending)


def new_signal(company: str, at: str) -> dict[str, Any]:
    return {"signalId": f"sig_{os.urandom(8).hex()}", "signalType": "Email Open", "companyId": company,
            "data": {"timestamp": at}}


async def produce_through_api(client: TestClient[Any, Any], ledger: Ledger, until: float, at: str) -> None:
    n = 0
    while time.monotonic() < until:
        n += 1
        company = f"comp_{n % COMPANIES}"
        signals = [new_signal(company, at) for _ in range(3)]
        try:
            async with client.post("/api/jobs", json={"type": "research", "data": {
                    "companyId": company, "companyName": "Acme"}}) as response:
                answer = await response.json()
                if response.status == 201:
                    ledger.research.append(answer["id"])
                else:
                    ledger.refused += 1
            async with client.post("/api/signals", json=signals) as response:
                if response.status == 202:
                    ledger.signals.update((s["signalId"], company) for s in signals)
                else:
                    ledger.refused += 1
        except Exception:
            ledger.refused += 1
        await asyncio.sleep(0.01)


async def produce_through_sdk(settings: Settings, ledger: Ledger, until: float, at: str) -> None:
    redis = connect(settings)
    producer, publisher = Producer(redis, settings), signal_publisher(redis, settings)
    n = 0
    try:
        while time.monotonic() < until:
            n += 1
            company = f"comp_{n % COMPANIES}"
            signals = [new_signal(company, at) for _ in range(3)]
            try:
                ledger.research.append((await producer.add("research", {"companyId": company,
                                                                        "companyName": "Acme"})).id)
                await publisher.publish_signals(signals)
                ledger.signals.update((s["signalId"], company) for s in signals)
            except Exception:
                ledger.refused += 1
            await asyncio.sleep(0.01)
    finally:
        await redis.aclose()


async def drained(admin: Redis, settings: Settings) -> bool:
    statuses = {s.queue: s for s in await QueueAdmin(admin, settings).all_status()}
    return all(not s.counts["waiting"] and not s.counts["active"] and not s.counts["delayed"] and not s.lag
               for q, s in statuses.items() if q in ("research", "signals"))


async def check(admin: Redis, settings: Settings, ledger: Ledger) -> dict[str, int]:
    k = QueueKeys(settings.key_prefix, "research")
    async with admin.pipeline(transaction=False) as pipe:
        for job_id in ledger.research:
            pipe.hget(k.job(job_id), "state")
        for signal_id, company in ledger.signals.items():
            pipe.exists(CompanyKeys(settings.key_prefix, company).seen(signal_id))
        pipe.hget(k.meta, "completed").zcard(k.state_index("completed"))
        replies = await pipe.execute()
    states = replies[:len(ledger.research)]
    seen = replies[len(ledger.research):-2]
    completed_total, completed_records = int(replies[-2] or 0), replies[-1]
    history = collections.Counter()
    for company in {f"comp_{n}" for n in range(COMPANIES)}:
        for entry in await admin.lrange(CompanyKeys(settings.key_prefix, company).signals, 0, -1):
            history[orjson.loads(entry)["signalId"]] += 1
    busy = not await drained(admin, settings)
    signal_status = await QueueAdmin(admin, settings).status("signals")
    counts = collections.Counter(states)
    return {
        "acknowledged": len(ledger.research) + len(ledger.signals),
        "completed": counts["completed"] + sum(seen),
        "dead-lettered": counts["failed"] + signal_status.failed_total,
        "lost": counts[None] + (0 if busy else len(seen) - sum(seen)),
        "duplicated effects": completed_total - completed_records + sum(c - 1 for c in history.values() if c > 1),
        "stuck": counts["waiting"] + counts["active"] + counts["delayed"] + (len(seen) - sum(seen) if busy else 0),
    }


@contextlib.contextmanager
def running_workers(args: dict[str, Any], count: int) -> Iterator[Workers]:
    workers = Workers(args, count)
    try:
        yield workers
    finally:
        workers.stop()


@contextlib.asynccontextmanager
async def api_client(settings: Settings) -> AsyncIterator[TestClient[Any, Any]]:
    async with TestClient(TestServer(create_app(settings))) as client:
        yield client


async def run_ledger(redis_server_factory: RedisServerFactory, key_prefix: str, *, seconds: float,
                     workers: int, fault_every: float) -> dict[str, int]:
    server = redis_server_factory(appendonly=True, extra_args=["--appendfsync", "always"])
    at = datetime.now(UTC).isoformat()
    ledger = Ledger()
    async with reply_proxy(server.port) as proxy:
        args = settings_args(proxy.url, key_prefix)
        settings = Settings(**args)
        admin = Redis.from_url(server.url, decode_responses=True)
        try:
            with running_workers(args, workers) as pool:
                async with api_client(settings) as client:
                    until = time.monotonic() + seconds
                    await asyncio.gather(produce_through_api(client, ledger, until, at),
                                         produce_through_sdk(settings, ledger, until, at),
                                         nemesis(server, proxy, pool, server.url, ledger, until, fault_every))
                deadline = time.monotonic() + DRAIN_TIMEOUT_S
                while time.monotonic() < deadline and not await drained(admin, settings):
                    await asyncio.sleep(0.25)
                result = await check(admin, settings, ledger)
        finally:
            await admin.aclose()
    print(f"\nledger: {', '.join(f'{name} {value}' for name, value in result.items())} "
          f"(refused {ledger.refused}; faults {dict(ledger.faults)}; replies dropped {proxy.dropped})")
    return result


def assert_clean(result: dict[str, int]) -> None:
    assert result["acknowledged"] > 0
    assert (result["lost"], result["duplicated effects"], result["stuck"]) == (0, 0, 0), result
    assert result["completed"] + result["dead-lettered"] >= result["acknowledged"], result


async def test_ledger_over_faults(redis_server_factory: RedisServerFactory, key_prefix: str) -> None:
    assert_clean(await run_ledger(redis_server_factory, key_prefix, seconds=float(os.environ.get(
        "LEDGER_SECONDS", 12)), workers=3, fault_every=0.8))


@pytest.mark.ledger_long
@pytest.mark.timeout(900)
async def test_ledger_over_faults_long(redis_server_factory: RedisServerFactory, key_prefix: str) -> None:
    assert_clean(await run_ledger(redis_server_factory, key_prefix, seconds=float(os.environ.get(
        "LEDGER_LONG_SECONDS", 180)), workers=5, fault_every=0.5))
