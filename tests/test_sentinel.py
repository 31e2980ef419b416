"""Sentinel: one primary, one replica, three sentinels (cli/embedded_sentinel.py), the
data nodes and the sentinels each behind their own password. `tgjobs up` (the API and a
worker) and a second `tgjobs workers` find the primary through the sentinels while jobs
flow through the API; then the primary is SIGKILLed (the sentinels promote the replica)
or demoted by a coordinated `SENTINEL FAILOVER`. Work resumes without restarting
anything, the API answers 503 (never 500) meanwhile, and every job it acknowledged before
or after the switch completes; in a coordinated failover without REDIS_WAIT_REPLICAS,
jobs acknowledged by the old primary while it still took writes (until the sentinels
named the new one, plus a second for the pools to follow) may be lost, and are counted.
The sync SDK, connected before, publishes after the switch to the new primary too, and
`tgjobs status` reaches it.
"""

from __future__ import annotations

import asyncio
import itertools
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import pytest
from pydantic import ValidationError
from redis_server import on_cluster
from test_cli import clean_env, one_line_error
from test_processes import eventually

from cli.embedded_redis import EmbeddedRedis, free_port
from cli.embedded_sentinel import EmbeddedSentinel
from cli.redis_binary import RedisServerNotFound, find_redis_server
from config import Settings
from streams.sentinel import FOLLOW_EVERY_S
from streams.replication import NotReplicated
from streams.signals_sdk import SyncSignalPublisher

ROOT = Path(__file__).parents[1]
PRIMARY_PASSWORD = "primary pw"
SENTINEL_PASSWORD = "sentinel pw"  # not the primary's: each must go where it belongs
MASTER = "jobs-primary"
JOBS_EACH_SIDE = 30  # jobs acknowledged before the switch, and again after it
MARGIN_S = 1.0  # for a request under way when its pool turned to the new primary

# Starts its own servers: runs once, in the single-server run.
on_own_servers = pytest.mark.skipif(on_cluster(), reason="runs in the single-server run")


# -- settings -------------------------------------------------------------------------------


@pytest.mark.parametrize(("value", "parsed"), [
    ("10.0.0.5:26380, 10.0.0.6:26381", (("10.0.0.5", 26380), ("10.0.0.6", 26381))),
    ("sentinel-a", (("sentinel-a", 26379),)),
    ("[::1]:26380,[fe80::1]", (("::1", 26380), ("fe80::1", 26379))),
])
def test_sentinel_addresses_parse(value: str, parsed: tuple[tuple[str, int], ...]) -> None:
    settings = Settings(redis_sentinels=value, redis_sentinel_master="main")
    assert settings.redis_sentinels == parsed and settings.redis_sentinel_mode


@pytest.mark.parametrize(("fields", "reason"), [
    ({"redis_sentinels": "a:0", "redis_sentinel_master": "m"}, "'a:0' is not host:port"),
    ({"redis_sentinels": "a:x", "redis_sentinel_master": "m"}, "'a:x' is not host:port"),
    ({"redis_sentinels": "a:26379"}, "REDIS_SENTINELS needs REDIS_SENTINEL_MASTER"),
    ({"redis_sentinel_master": "m"}, "REDIS_SENTINEL_MASTER needs REDIS_SENTINELS"),
    ({"redis_sentinels": "a", "redis_sentinel_master": "m", "redis_cluster": "yes"}, "exclude each other"),
])
def test_bad_sentinel_settings_are_named(fields: dict[str, str], reason: str) -> None:
    with pytest.raises(ValidationError, match=reason):
        Settings(**fields)


def test_messages_name_the_sentinels_not_the_unused_url() -> None:
    settings = Settings(redis_sentinels="10.0.0.5:26380,[::1]", redis_sentinel_master="main",
                        redis_password="s3cr3t", redis_sentinel_password="t0p")
    assert settings.redis_location() == "the primary 'main' of sentinels 10.0.0.5:26380,[::1]:26379"
    assert "s3cr3t" not in repr(settings) and "t0p" not in repr(settings)


# -- a deployment ---------------------------------------------------------------------------


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
            # every job stays readable by id, so that each one's end can be checked
            "QUEUES__SIGNALS__KEEP_COMPLETED": "100000"}


def tgjobs(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "cli.main", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=60)


@dataclass
class Process:
    proc: subprocess.Popen[bytes]
    log_path: Path

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


@pytest.fixture
def start(tmp_path: Path, env: dict[str, str]) -> Iterator[Callable[..., Process]]:
    """Starts `tgjobs ARGS...` in the background; every one is killed at teardown."""
    started: list[Process] = []

    def run(*args: str) -> Process:
        log_path = tmp_path / f"{args[0]}-{len(started)}.log"
        with log_path.open("wb") as stderr:
            proc = subprocess.Popen([sys.executable, "-m", "cli.main", *args], cwd=ROOT, env=env,
                                    stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=stderr)
        started.append(Process(proc, log_path))
        return started[-1]

    yield run
    for process in started:
        if process.proc.poll() is None:
            process.proc.kill()
        process.proc.wait()


@dataclass
class Client:
    """Adds signal jobs through the API one after another (one answered 503 is sent again
    until acknowledged: the signals processor records a signalId once), and reads the
    counts of every queue beside it; every answer's status is counted."""

    session: aiohttp.ClientSession
    api: str
    statuses: Counter[int] = field(default_factory=Counter)
    acked: dict[str, float] = field(default_factory=dict)  # job id -> when acknowledged (monotonic)

    async def add_until(self, stop: asyncio.Event) -> None:
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
            self.acked[(await answer.json())["id"]] = time.monotonic()
            return True

    async def read_until(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            async with self.session.get(f"{self.api}/api/jobs") as answer:
                self.statuses[answer.status] += 1
            await asyncio.sleep(0.05)

    def acknowledged(self, after: float = float("-inf"), before: float = float("inf")) -> list[str]:
        return [job_id for job_id, at in self.acked.items() if after < at < before]

    async def completed(self, job_ids: list[str]) -> bool:
        return not await self.unfinished(job_ids)

    async def unfinished(self, job_ids: list[str]) -> list[str]:
        left = []
        for job_id in job_ids:
            async with self.session.get(f"{self.api}/api/jobs/{job_id}") as answer:
                if answer.status != 200 or (await answer.json())["status"] != "completed":
                    left.append(job_id)
        return left

    async def ready(self) -> bool:
        try:
            async with self.session.get(f"{self.api}/readyz") as answer:
                return answer.status == 200
        except aiohttp.ClientConnectionError:
            return False


def sdk(env: dict[str, str]) -> SyncSignalPublisher:
    settings = Settings(redis_sentinels=env["REDIS_SENTINELS"], redis_sentinel_master=MASTER,
                        redis_sentinel_password=SENTINEL_PASSWORD, redis_password=PRIMARY_PASSWORD,
                        key_prefix=env["KEY_PREFIX"], redis_wait_replicas=int(env["REDIS_WAIT_REPLICAS"]))
    return SyncSignalPublisher.connect(settings, queue="signals")


def publish(publisher: SyncSignalPublisher, signal_id: str) -> str:
    """One signal through the sync SDK, sent again while replicas do not confirm it."""
    while True:
        try:
            return publisher.publish_signal({"signalId": signal_id, "signalType": "Email Open",
                                             "companyId": "comp_1", "data": {}})
        except NotReplicated:
            time.sleep(0.2)


async def switch_primary(deployment: EmbeddedSentinel, how: str) -> tuple[EmbeddedRedis, EmbeddedRedis]:
    """SIGKILL the primary or demote it (SENTINEL FAILOVER); (old, new) once a replica is named."""
    old = deployment.primary()
    if how == "kill":
        old.kill()
        return old, await asyncio.to_thread(deployment.wait_failover, old)
    return old, await asyncio.to_thread(deployment.failover)


@on_own_servers
@pytest.mark.parametrize(("how", "wait_replicas"), [("kill", 0), ("failover", 0), ("failover", 1)])
async def test_work_resumes_after_the_primary_is_killed_or_demoted(
        how: str, wait_replicas: int, deployment: EmbeddedSentinel, env: dict[str, str],
        start: Callable[..., Process]) -> None:
    env["REDIS_WAIT_REPLICAS"] = str(wait_replicas)
    port = free_port()
    up = start("up", "--host", "127.0.0.1", "--port", str(port), "--queues", "signals")
    workers = start("workers", "--queues", "signals")
    publisher = sdk(env)  # connected before the switch: its pool must follow the primary too

    def logs() -> str:
        return "\n".join(f"--- {p.log_path.name}:\n{p.log()[-4000:]}" for p in (up, workers))

    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as session:
        client = Client(session, f"http://127.0.0.1:{port}")
        await eventually(client.ready, 30, interval=0.1, what=logs)
        sdk_jobs = [publish(publisher, "sig_sdk_before")]
        stop = asyncio.Event()
        flows = [asyncio.create_task(client.add_until(stop)), asyncio.create_task(client.read_until(stop))]
        try:
            await eventually(lambda: len(client.acked) >= JOBS_EACH_SIDE, 20, what=logs)
            switched_at = time.monotonic()
            old, new = await switch_primary(deployment, how)
            named_at = time.monotonic()
            # A demoted primary takes writes until the sentinels name the new one, and until
            # each pool asks them again (once a second): writes it took then are lost, unless
            # they waited for a replica (it has none: that one is the new primary).
            settled_at = named_at + FOLLOW_EVERY_S + MARGIN_S if how == "failover" and not wait_replicas \
                else switched_at
            await eventually(lambda: len(client.acknowledged(after=settled_at)) >= JOBS_EACH_SIDE, 30,
                             what=lambda: f"{client.statuses}\n{logs()}")
            sdk_jobs.append(await asyncio.to_thread(publish, publisher, "sig_sdk_after"))
            if how == "failover":  # jobs come until the old primary is a replica (its writes dropped)
                await eventually(lambda: deployment.role(old) == "slave", 30, what=logs)
        finally:
            stop.set()
            await asyncio.gather(*flows)
            publisher.close()
        must_complete = client.acknowledged(before=switched_at) + client.acknowledged(after=settled_at) + sdk_jobs
        await eventually(lambda: client.completed(must_complete), 30, interval=0.2,
                         what=lambda: f"every job acknowledged outside the switch completed\n{logs()}")
        in_switch = client.acknowledged(after=switched_at, before=settled_at)
        lost = await client.unfinished(in_switch)
        print(f"{how}, REDIS_WAIT_REPLICAS={wait_replicas}: new primary named after {named_at - switched_at:.1f}s; "
              f"answers {dict(client.statuses)}; {len(must_complete)} jobs acknowledged outside the switch, all "
              f"completed; {len(in_switch)} during it, {len(lost)} of them lost")

    assert new is not old
    # Never a 500, and nobody was restarted: both processes still run.
    assert set(client.statuses) <= {200, 201, 503}, (client.statuses, logs())
    assert up.proc.poll() is None and workers.proc.poll() is None, logs()
    # A coordinated failover is seamless, unless writes wait for a replica: the new
    # primary has none until the sentinels turn the old one into its replica.
    assert (client.statuses[503] > 0) == (how == "kill" or wait_replicas > 0), client.statuses
    for process in (up, workers):
        assert ("Redis reachable again" if how == "kill" else f"as primary {MASTER!r} now") in process.log(), logs()
    assert PRIMARY_PASSWORD not in logs() and SENTINEL_PASSWORD not in logs()
    status = tgjobs(env, "status", "--json")  # the CLI, started afresh, finds the new primary
    assert status.returncode == 0 and '"queue":"signals"' in status.stdout, status


@on_own_servers
@pytest.mark.parametrize(("variable", "refusals"), [("REDIS_SENTINEL_PASSWORD", 3), ("REDIS_PASSWORD", 1)])
def test_a_wrong_password_is_a_one_line_error_naming_who_refused(
        env: dict[str, str], variable: str, refusals: int) -> None:
    """Each sentinel refuses a wrong sentinel password (each is named); the primary a
    wrong primary password (found through the sentinels, which let us in)."""
    wrong = "not-the-password"
    line = one_line_error(tgjobs({**env, variable: wrong}, "status"), 3)
    assert line.startswith(f"tgjobs: cannot reach Redis at the primary '{MASTER}' of sentinels 127.0.0.1:"), line
    assert line.count("invalid username-password pair") == refusals, line
    assert line.count("sentinel 127.0.0.1:") == (refusals if variable == "REDIS_SENTINEL_PASSWORD" else 0), line
    assert wrong not in line and PRIMARY_PASSWORD not in line and SENTINEL_PASSWORD not in line
