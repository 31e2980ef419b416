"""The sink inside real `tgjobs workers` processes, and its commands: PostgreSQL stopped
while jobs and signals flow (they still complete, the lag shows, every row arrives when it
is back, no worker dies), a SIGKILLed worker (one row per id), workers refusing a schema
that is behind (exit 2), `tgjobs db migrate|status|dlq` and `tgjobs sink --burst`.
"""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from redis.asyncio import Redis
from test_cli import clean_env
from test_processes import eventually

from pg_server import TemporaryPostgres
from config import Settings
from processors.models import SignalData
from processors.outbox_admin import OutboxAdmin
from processors.signals import SignalProcessor
from streams import JobSpec, Producer, QueueAdmin

ROOT = Path(__file__).parents[1]
QUEUES = "signals,enrichment"
START_TIMEOUT_S = 60


class Cli:
    """`tgjobs` as a subprocess on the test Redis and a PostgreSQL, under the test's prefix
    and schema, with fast sink timings."""

    def __init__(self, redis_url: str, key_prefix: str, database_url: str, tmp_path: Path) -> None:
        self.env = {**clean_env(), "REDIS_URL": redis_url, "KEY_PREFIX": key_prefix, "DATABASE_URL": database_url,
                    "DATABASE_SCHEMA": key_prefix, "READ_BLOCK": "0.2", "SINK_POLL_INTERVAL": "0.05",
                    "SINK_RETRY_INTERVAL": "0.2", "SINK_SWEEP_INTERVAL": "0.5", "SINK_CLAIM_AFTER": "0.5",
                    "DATABASE_TIMEOUT": "3", "SHUTDOWN_GRACE": "5",
                    # a killed worker's entries are reclaimed within a second
                    "QUEUES__SIGNALS__LOCK_TIMEOUT": "1", "QUEUES__ENRICHMENT__LOCK_TIMEOUT": "1"}
        self.tmp_path = tmp_path
        self.procs: list[subprocess.Popen[bytes]] = []

    def run(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "cli.main", *args], cwd=ROOT, env=self.env,
                              capture_output=True, text=True, timeout=START_TIMEOUT_S)

    def start_workers(self) -> subprocess.Popen[bytes]:
        log = (self.tmp_path / f"workers-{len(self.procs)}.log").open("wb")
        proc = subprocess.Popen([sys.executable, "-m", "cli.main", "workers", "--queues", QUEUES], cwd=ROOT,
                                env=self.env, stdin=subprocess.DEVNULL, stdout=log, stderr=log)
        self.procs.append(proc)
        return proc

    def logs(self) -> str:
        return "\n".join(p.read_text(errors="replace")[-3000:] for p in sorted(self.tmp_path.glob("workers-*.log")))


@pytest.fixture
def cli_factory(redis_url: str, key_prefix: str, tmp_path: Path) -> Iterator[Callable[[str], Cli]]:
    made: list[Cli] = []

    def make(database_url: str) -> Cli:
        made.append(Cli(redis_url, key_prefix, database_url, tmp_path))
        return made[-1]

    yield make
    for cli in made:
        for proc in cli.procs:
            if proc.poll() is None:
                proc.kill()
            proc.wait()


def signal_spec(n: int) -> JobSpec:
    return JobSpec({"signalId": f"sig_{n}", "signalType": "Email Open", "companyId": f"comp_{n % 4}",
                    "data": {"contactId": f"c_{n % 7}"}})


def enrichment_spec(n: int) -> JobSpec:
    return JobSpec({"contactId": f"contact_{n}", "companyId": f"comp_{n % 4}"})


async def publish(settings: Settings, redis: Redis, first: int, last: int) -> None:
    producer = Producer(redis, settings)
    await producer.add_many("signals", [signal_spec(n) for n in range(first, last)])
    await producer.add_many("enrichment", [enrichment_spec(n) for n in range(first // 10, last // 10)])


async def completed(settings: Settings, redis: Redis) -> dict[str, int]:
    admin = QueueAdmin(redis, settings)
    return {q: (await admin.status(q)).completed_total for q in ("signals", "enrichment")}


async def table_ids(url: str, schema: str, table: str) -> set[str]:
    conn = await asyncpg.connect(url)
    try:
        return {r["id"] for r in await conn.fetch(f'SELECT id FROM "{schema}".{table}')}
    finally:
        await conn.close()


def settings_of(make_settings: Callable[..., Settings], url: str, key_prefix: str) -> Settings:
    return make_settings(database_url=url, database_schema=key_prefix)


# -- PostgreSQL away and back ------------------------------------------------------------------

async def test_database_stopped_while_jobs_flow_then_started_every_row_arrives(
        private_postgres: TemporaryPostgres, cli_factory: Callable[[str], Cli], engine_redis: Redis,
        make_settings: Callable[..., Settings], key_prefix: str) -> None:
    pg, cli = private_postgres, cli_factory(private_postgres.url)
    s = settings_of(make_settings, pg.url, key_prefix)
    assert cli.run("db", "migrate").returncode == 0
    workers = cli.start_workers()
    await publish(s, engine_redis, 0, 100)
    await eventually(lambda: _count(pg.url, key_prefix, "signals", 100), 60, interval=0.2, what=cli.logs)

    pg.stop()
    await publish(s, engine_redis, 100, 200)
    await eventually(lambda: _all_done(s, engine_redis, {"signals": 200, "enrichment": 20}), 60,
                     what=cli.logs)  # jobs complete while the database is away
    figures = await OutboxAdmin(engine_redis, s).figures()
    assert figures.lag > 0 and figures.waiting_companies > 0
    status = cli.run("status")
    assert status.returncode == 0 and re.search(r"sink: lag [1-9]\d* outbox entries", status.stdout), status

    pg.start()
    await eventually(lambda: _count(pg.url, key_prefix, "signals", 200), 60, interval=0.2, what=cli.logs)
    await eventually(lambda: _count(pg.url, key_prefix, "contacts", 20), 30, interval=0.2, what=cli.logs)
    assert await table_ids(pg.url, key_prefix, "signals") == {f"sig_{n}" for n in range(200)}
    assert workers.poll() is None, cli.logs()  # no worker died
    await eventually(lambda: _lag_is(s, engine_redis, 0), 30, what=cli.logs)
    workers.send_signal(signal.SIGTERM)
    assert workers.wait(30) == 0, cli.logs()


async def test_a_sigkilled_worker_leaves_one_row_per_id(
        postgres_server_url: str, cli_factory: Callable[[str], Cli], engine_redis: Redis,
        make_settings: Callable[..., Settings], key_prefix: str) -> None:
    cli = cli_factory(postgres_server_url)
    s = settings_of(make_settings, postgres_server_url, key_prefix)
    assert cli.run("db", "migrate").returncode == 0
    try:
        first = cli.start_workers()
        await publish(s, engine_redis, 0, 300)
        await eventually(lambda: _count(postgres_server_url, key_prefix, "signals", 1, at_least=True), 60,
                         interval=0.05, what=cli.logs)
        first.kill()  # SIGKILL, mid-flow
        first.wait()
        await publish(s, engine_redis, 300, 400)
        second = cli.start_workers()
        await eventually(lambda: _count(postgres_server_url, key_prefix, "signals", 400), 60, interval=0.2,
                         what=cli.logs)
        await eventually(lambda: _count(postgres_server_url, key_prefix, "contacts", 40), 30, interval=0.2,
                         what=cli.logs)
        await eventually(lambda: _lag_is(s, engine_redis, 0), 30, what=cli.logs)
        assert await table_ids(postgres_server_url, key_prefix, "signals") == {f"sig_{n}" for n in range(400)}
        second.send_signal(signal.SIGTERM)
        assert second.wait(30) == 0, cli.logs()
    finally:
        await _drop(postgres_server_url, key_prefix)


# -- the commands ---------------------------------------------------------------------------------

async def test_workers_refuse_a_schema_that_is_behind_and_db_commands(
        postgres_server_url: str, cli_factory: Callable[[str], Cli], engine_redis: Redis,
        make_settings: Callable[..., Settings], key_prefix: str) -> None:
    cli = cli_factory(postgres_server_url)
    try:
        refused = cli.run("workers", "--queues", QUEUES)
        assert refused.returncode == 2, refused
        assert refused.stderr.count("\n") == 1 and "tgjobs db migrate" in refused.stderr
        assert postgres_server_url.split("@")[0] not in refused.stderr  # no credentials shown

        pending = json.loads(cli.run("db", "status", "--json").stdout)
        assert (pending["version"], pending["pending"]) == (0, [{"version": 1, "name": "records"}])
        assert cli.run("db", "migrate").stdout.strip() == "applied 0001 records"
        assert cli.run("db", "migrate").stdout.strip() == f"schema {key_prefix}: up to date"
        current = json.loads(cli.run("db", "status", "--json").stdout)
        assert (current["version"], current["pending"], current["sink"]["lag"]) == (1, [], 0)

        s = settings_of(make_settings, postgres_server_url, key_prefix)
        await publish(s, engine_redis, 0, 10)
        await SignalProcessor(s, engine_redis).process_signals(
            [SignalData(signalId="sig_nul", signalType="Email Open", companyId="comp_1", data={"x": "\u0000"})])
        drained = cli.run("sink", "--burst")
        assert drained.returncode == 0, drained
        listed = json.loads(cli.run("db", "dlq", "list", "--json").stdout)
        assert [(d["table"], d["rowId"]) for d in listed] == [("signals", "sig_nul")]
        assert listed[0]["error"].startswith("22")
        bad = cli.run("db", "dlq", "replay", "--ids", "nope")
        assert bad.returncode == 2 and "--ids" in bad.stderr
        assert json.loads(cli.run("db", "dlq", "purge", "--json").stdout) == {"action": "purge", "purged": 1}
        shown = cli.run("db", "status")
        assert shown.returncode == 0 and "sink: lag 0" in shown.stdout
    finally:
        await _drop(postgres_server_url, key_prefix)


def test_db_commands_need_a_database_url(cli_factory: Callable[[str], Cli]) -> None:
    cli = cli_factory("")
    cli.env.pop("DATABASE_URL")
    for args in (("db", "migrate"), ("sink",)):
        done = cli.run(*args)
        assert done.returncode == 2 and "DATABASE_URL is not set" in done.stderr, done


# -- helpers ---------------------------------------------------------------------------------------

async def _count(url: str, schema: str, table: str, expected: int, *, at_least: bool = False) -> bool:
    try:
        ids = await table_ids(url, schema, table)
    except (OSError, asyncpg.PostgresError):
        return False
    return len(ids) >= expected if at_least else len(ids) == expected


async def _all_done(settings: Settings, redis: Redis, expected: dict[str, int]) -> Any:
    return await completed(settings, redis) == expected


async def _lag_is(settings: Settings, redis: Redis, lag: int) -> bool:
    return (await OutboxAdmin(redis, settings).figures()).lag == lag


async def _drop(url: str, schema: str) -> None:
    conn = await asyncpg.connect(url)
    try:
        await conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
    finally:
        await conn.close()
