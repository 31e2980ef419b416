"""Records in PostgreSQL, against a real PostgreSQL the suite starts itself (each test in
a schema of its own, named after its key prefix): migrations, every record type in its
table, one row per id through retries, replays, duplicates and a sink that died after
writing, rejected rows as dead letters with the database's reason, and replay.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Any

import asyncpg
import pytest
from redis.asyncio import Redis

from config import Settings
from processors.models import SignalData
from processors.outbox_admin import OutboxAdmin
from processors.outbox_drain import OutboxDrain
from processors.periods import iso_instant, now_ms
from processors.signals import SignalProcessor
from processors.store import Store
from sink import Sink, apply_migrations, check_schema, schema_status
from sink.migrations import SchemaBehind, package_version
from sink.writer import PgWriter

SettingsFactory = Callable[..., Settings]


@pytest.fixture
def pg_settings(make_settings: SettingsFactory, postgres_server_url: str, key_prefix: str) -> Settings:
    return make_settings(database_url=postgres_server_url, database_schema=key_prefix, sink_poll_interval=0.05,
                         sink_retry_interval=0.1, sink_claim_after=0.2)


@pytest.fixture
async def db(pg_settings: Settings) -> AsyncIterator[asyncpg.Connection]:
    """A connection, with the test's schema migrated; the schema is dropped afterwards."""
    await apply_migrations(pg_settings)
    conn = await asyncpg.connect(pg_settings.database_dsn())
    try:
        yield conn
    finally:
        await conn.execute(f'DROP SCHEMA "{pg_settings.database_schema}" CASCADE')
        await conn.close()


async def rows(conn: asyncpg.Connection, settings: Settings, table: str) -> dict[str, dict[str, Any]]:
    records = await conn.fetch(f'SELECT * FROM "{settings.database_schema}".{table}')
    return {r["id"]: dict(r) for r in records}


async def drain(settings: Settings, redis: Redis) -> None:
    await Sink(settings, redis).run(asyncio.Event(), burst=True)


def signal(n: int, company: str = "comp_1", kind: str = "Email Open", **data: Any) -> SignalData:
    return SignalData(signalId=f"sig_{n}", signalType=kind, companyId=company,
                      data={"contactId": f"c_{n % 3}", **data})


# -- migrations ---------------------------------------------------------------------------

async def test_migrations_apply_once_twice_in_a_row_and_two_at_once(pg_settings: Settings) -> None:
    other = pg_settings.model_copy(update={"database_schema": pg_settings.database_schema + "_b"})
    try:
        with pytest.raises(SchemaBehind, match="tgjobs db migrate"):
            await check_schema(pg_settings)
        before = await schema_status(pg_settings)
        assert (before.version, [m.version for m in before.pending]) == (0, [1])

        first = await apply_migrations(pg_settings)
        assert [m.version for m in first] == [1]
        assert await apply_migrations(pg_settings) == []  # twice in a row: nothing to do
        await check_schema(pg_settings)

        both = await asyncio.gather(apply_migrations(other), apply_migrations(other))  # two at once
        assert sorted(len(applied) for applied in both) == [0, 1]
        after = await schema_status(other)
        assert (after.version, after.pending) == (package_version(), [])
        assert [(a.version, a.name, a.changed) for a in after.applied] == [(1, "records", False)]
    finally:
        conn = await asyncpg.connect(pg_settings.database_dsn())
        for schema in (pg_settings.database_schema, other.database_schema):
            await conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        await conn.close()


# -- every record type ----------------------------------------------------------------------

async def test_every_record_type_reaches_its_table(pg_settings: Settings, engine_redis: Redis,
                                                   db: asyncpg.Connection) -> None:
    s, store = pg_settings, Store(engine_redis, pg_settings)
    now = now_ms()
    await store.save_profile("comp_1", companyName="Acme", domain="acme.com")
    await SignalProcessor(s, engine_redis).process_signals(
        [signal(1, timestamp="2026-01-05T10:00:00Z"), signal(2, kind="Demo Request")])
    await store.update_contact("comp_1", "c_1", lambda _: {
        "contactId": "c_1", "companyId": "comp_1", "email": "ann@acme.com", "emailStatus": "valid",
        "linkedinUrl": "https://www.linkedin.com/in/ann", "title": "CTO"})
    await store.save_research({"researchId": "res_1", "jobId": "research-1", "companyId": "comp_1",
                               "summary": "Acme is hiring.", "generatedAt": iso_instant(now)}, now)
    await store.save_report({"reportId": "rep_1", "companyId": "comp_1", "reportType": "weekly",
                             "periodStart": "2026-01-05", "periodEnd": "2026-01-11", "email": {"status": "pending"},
                             "generatedAt": iso_instant(now)}, "<h1>Acme</h1>", now)
    await store.update_report("comp_1", "rep_1", email={"status": "sent"})

    await drain(s, engine_redis)

    (company,) = (await rows(db, s, "companies")).values()
    assert (company["id"], company["name"], company["domain"]) == ("comp_1", "Acme", "acme.com")
    assert company["intent_score"] == pytest.approx(
        float((await engine_redis.hget(store.company("comp_1").intent, "score")) or 0), rel=1e-9)
    signals = await rows(db, s, "signals")
    assert set(signals) == {"sig_1", "sig_2"}
    assert (signals["sig_1"]["signal_type"], signals["sig_1"]["contact_id"]) == ("Email Open", "c_1")
    assert signals["sig_1"]["occurred_at"].isoformat() == "2026-01-05T10:00:00+00:00"
    assert signals["sig_2"]["signal_type"] == "Demo Request"
    (contact,) = (await rows(db, s, "contacts")).values()
    assert (contact["id"], contact["company_id"], contact["email"], contact["email_status"], contact["title"],
            contact["linkedin_url"]) == ("c_1", "comp_1", "ann@acme.com", "valid", "CTO",
                                         "https://www.linkedin.com/in/ann")
    (research,) = (await rows(db, s, "research")).values()
    assert (research["id"], research["company_id"], research["job_id"], research["summary"]) == (
        "res_1", "comp_1", "research-1", "Acme is hiring.")
    (report,) = (await rows(db, s, "reports")).values()
    assert (report["id"], report["report_type"], str(report["period_start"]), report["html"]) == (
        "rep_1", "weekly", "2026-01-05", "<h1>Acme</h1>")
    assert '"sent"' in report["data"]  # the later update won, and kept the HTML
    figures = await OutboxAdmin(engine_redis, s).figures()
    assert (figures.lag, figures.waiting_companies, figures.dead_letters) == (0, 0, 0)
    assert figures.rows_total["signals"] == 2


# -- exactly one row per id -------------------------------------------------------------------

async def test_retries_replays_and_duplicates_leave_one_row_per_id(pg_settings: Settings, engine_redis: Redis,
                                                                   db: asyncpg.Connection) -> None:
    s, store = pg_settings, Store(engine_redis, pg_settings)
    processor = SignalProcessor(s, engine_redis)
    batch = [signal(n, company=f"comp_{n % 2}") for n in range(20)]
    await processor.process_signals(batch)
    await processor.process_signals(batch)  # duplicates (a redelivered batch)
    now = now_ms()
    research = {"researchId": "res_1", "companyId": "comp_0", "summary": "v1", "generatedAt": iso_instant(now)}
    await store.save_research(research, now)
    await store.save_research({**research, "summary": "v2"}, now)  # a retried job writes its record again
    await drain(s, engine_redis)
    # Replays: every row written again, as a replayed outbox would (beyond the dedupe window).
    keys = store.company("comp_0")
    later = now_ms() + 3_600_000
    await engine_redis.xadd(keys.outbox, {"rows": '{"signals": [{"id": "sig_0", "company_id": "comp_0", '
                                          '"signal_type": "Email Open", "occurred_at": 0, "data": {}, '
                                          f'"received_at": {later}}}]}}'})
    await store.outbox.notify(["comp_0"])
    await drain(s, engine_redis)

    signals = await rows(db, s, "signals")
    assert sorted(signals) == sorted(f"sig_{n}" for n in range(20))
    assert await db.fetchval(f'SELECT count(*) FROM "{s.database_schema}".signals') == 20
    assert (await rows(db, s, "research"))["res_1"]["summary"] == "v2"
    assert signals["sig_0"]["received_at"].timestamp() * 1000 < later  # a replay keeps the first arrival time


async def test_a_sink_that_died_after_writing_is_taken_over_without_a_second_row(
        pg_settings: Settings, engine_redis: Redis, db: asyncpg.Connection) -> None:
    s = pg_settings
    await SignalProcessor(s, engine_redis).process_signals([signal(n) for n in range(10)])
    # The first sink reads and writes, then dies before it acks (as SIGKILL would leave it).
    dead = OutboxDrain(engine_redis, s, consumer="sink-dead")
    await dead.sweep()
    batch = await dead.read()
    writer = PgWriter(s)
    await writer.write(batch.rows())
    await writer.close()
    assert len(await rows(db, s, "signals")) == 10
    await asyncio.sleep(s.sink_claim_after + 0.05)  # its entries idle past SINK_CLAIM_AFTER
    await drain(s, engine_redis)  # a new sink's first sweep takes them over
    assert len(await rows(db, s, "signals")) == 10
    figures = await OutboxAdmin(engine_redis, s).figures()
    assert (figures.lag, figures.waiting_companies) == (0, 0)


# -- rejected rows ---------------------------------------------------------------------------

async def test_a_rejected_row_is_a_dead_letter_with_the_reason_and_replays(
        pg_settings: Settings, engine_redis: Redis, db: asyncpg.Connection) -> None:
    s = pg_settings
    await db.execute(f'ALTER TABLE "{s.database_schema}".signals ADD CONSTRAINT no_hiring '
                     "CHECK (signal_type <> 'Hiring')")
    await SignalProcessor(s, engine_redis).process_signals(
        [signal(1), signal(2, kind="Hiring"), signal(3), signal(4, note="nul \u0000 byte")])
    await drain(s, engine_redis)

    assert set(await rows(db, s, "signals")) == {"sig_1", "sig_3"}  # the others still arrived
    admin = OutboxAdmin(engine_redis, s)
    letters = {letter.row["id"]: letter for letter in await admin.dead_letters()}
    assert set(letters) == {"sig_2", "sig_4"}
    assert "23514" in letters["sig_2"].error and "no_hiring" in letters["sig_2"].error
    assert letters["sig_4"].error.startswith("22")  # PostgreSQL's text cannot hold \u0000
    assert (letters["sig_2"].table, letters["sig_2"].company_id) == ("signals", "comp_1")

    await db.execute(f'ALTER TABLE "{s.database_schema}".signals DROP CONSTRAINT no_hiring')
    assert await admin.replay([letters["sig_2"].entry_id]) == [letters["sig_2"].entry_id]
    await drain(s, engine_redis)
    assert set(await rows(db, s, "signals")) == {"sig_1", "sig_2", "sig_3"}
    assert [letter.row["id"] for letter in await admin.dead_letters()] == ["sig_4"]
    assert await admin.purge() == 1


async def test_without_a_database_url_nothing_is_appended(make_settings: SettingsFactory,
                                                          engine_redis: Redis) -> None:
    s = make_settings()
    await SignalProcessor(s, engine_redis).process_signals([signal(1)])
    await Store(engine_redis, s).save_profile("comp_1", companyName="Acme")
    assert await engine_redis.exists(Store(engine_redis, s).company("comp_1").outbox) == 0
    assert (await OutboxAdmin(engine_redis, s).figures()).waiting_companies == 0
