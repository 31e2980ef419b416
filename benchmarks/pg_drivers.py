"""asyncpg against psycopg 3 (async): batch upserts of signal rows, the sink's busiest
table, by four ways of sending a batch. The sink's driver was chosen by these figures.

    DATABASE_URL=postgresql://... N=50000 python benchmarks/pg_drivers.py

DATABASE_URL unset: a private PostgreSQL is started for the run (tests/pg_server.py).
psycopg is not a dependency of tgjobs: `pip install "psycopg[binary]"` to measure it too
(without it, its rows are left out and a line says so).
Each way upserts N new rows in batches of BATCH, then the same N again (every row a
conflict, so an update), into a fresh table; rows/s of each pass. The rows arrive as
the outbox holds them, JSON texts, so each way's decoding cost is in its figure.
Prints a table, then one JSON line per (driver, way).
"""

from __future__ import annotations

import asyncio
import importlib.util
import os
import re
import time
from collections.abc import Awaitable, Callable
from typing import Any

import orjson

from common import database_url

BATCH = int(os.environ.get("BATCH", 1000))
COLUMNS = ["id", "company_id", "signal_type", "contact_id", "occurred_at", "data", "received_at"]
CASTS = ["text", "text", "text", "text", "timestamptz", "jsonb", "timestamptz"]
TABLE = """CREATE TABLE bench_signals (id text PRIMARY KEY, company_id text NOT NULL, signal_type text NOT NULL,
    contact_id text, occurred_at timestamptz NOT NULL, data jsonb NOT NULL, received_at timestamptz NOT NULL)"""
UPDATE = ", ".join(f"{c} = EXCLUDED.{c}" for c in COLUMNS[1:])
SELECTED = ", ".join(f"{c}::{t}" for c, t in zip(COLUMNS, CASTS))
JSON_SQL = (f"INSERT INTO bench_signals SELECT * FROM jsonb_populate_recordset(NULL::bench_signals, $1::jsonb) "
            f"ON CONFLICT (id) DO UPDATE SET {UPDATE}")
UNNEST_SQL = (f"INSERT INTO bench_signals SELECT {SELECTED} FROM unnest("
              + ", ".join(f"${i}::text[]" for i in range(1, len(COLUMNS) + 1))
              + f") AS r({', '.join(COLUMNS)}) ON CONFLICT (id) DO UPDATE SET {UPDATE}")
ROW_SQL = (f"INSERT INTO bench_signals VALUES ({', '.join(f'${i}::text::{t}' for i, t in enumerate(CASTS, 1))}) "
           f"ON CONFLICT (id) DO UPDATE SET {UPDATE}")
TEMP_SQL = f"CREATE TEMP TABLE IF NOT EXISTS bench_in ({', '.join(c + ' text' for c in COLUMNS)}) ON COMMIT DELETE ROWS"
DOCS_SQL = "CREATE TEMP TABLE IF NOT EXISTS bench_docs (doc text) ON COMMIT DELETE ROWS"
FROM_DOCS_SQL = ("INSERT INTO bench_signals SELECT r.* FROM bench_docs, "
                 f"jsonb_populate_record(NULL::bench_signals, doc::jsonb) r ON CONFLICT (id) DO UPDATE SET {UPDATE}")
FROM_TEMP_SQL = f"INSERT INTO bench_signals SELECT {SELECTED} FROM bench_in ON CONFLICT (id) DO UPDATE SET {UPDATE}"


def outbox_rows(n: int) -> list[bytes]:
    return [orjson.dumps({"id": f"sig_{i}", "company_id": f"comp_{i % 100}", "signal_type": "Email Open",
                          "contact_id": f"c_{i % 1000}", "occurred_at": "2026-01-05T10:00:00.000Z",
                          "data": {"contactId": f"c_{i % 1000}", "campaign": "q1", "n": i},
                          "received_at": "2026-01-05T10:00:00.123Z"}) for i in range(n)]


def as_texts(raw: bytes) -> list[str | None]:
    row = orjson.loads(raw)
    return [orjson.dumps(row[c]).decode() if c == "data" else row[c] for c in COLUMNS]


def as_json_array(batch: list[bytes]) -> str:
    return (b"[" + b",".join(batch) + b"]").decode()


# -- asyncpg ----------------------------------------------------------------------------

async def asyncpg_ways(url: str) -> dict[str, Callable[[list[bytes]], Awaitable[None]]]:
    import asyncpg

    conn = await asyncpg.connect(url)
    await conn.execute(TEMP_SQL)
    await conn.execute(DOCS_SQL)

    async def json(batch: list[bytes]) -> None:
        await conn.execute(JSON_SQL, as_json_array(batch))

    async def copy_json(batch: list[bytes]) -> None:
        async with conn.transaction():
            await conn.copy_records_to_table("bench_docs", records=[(raw.decode(),) for raw in batch])
            await conn.execute(FROM_DOCS_SQL)

    async def unnest(batch: list[bytes]) -> None:
        await conn.execute(UNNEST_SQL, *map(list, zip(*map(as_texts, batch))))

    async def copy(batch: list[bytes]) -> None:
        async with conn.transaction():
            await conn.copy_records_to_table("bench_in", records=map(as_texts, batch))
            await conn.execute(FROM_TEMP_SQL)

    async def executemany(batch: list[bytes]) -> None:
        await conn.executemany(ROW_SQL, map(as_texts, batch))

    return {"json recordset": json, "copy json + insert": copy_json, "unnest arrays": unnest,
            "copy + insert": copy, "executemany": executemany}


# -- psycopg 3 ----------------------------------------------------------------------------

def percent_style(sql: str) -> str:
    """$1, $2, ... (asyncpg's placeholders) as psycopg's %s."""
    return re.sub(r"\$\d+", "%s", sql)


async def psycopg_ways(url: str) -> dict[str, Callable[[list[bytes]], Awaitable[None]]]:
    import psycopg

    conn = await psycopg.AsyncConnection.connect(url, autocommit=True)
    await conn.execute(TEMP_SQL)
    await conn.execute(DOCS_SQL)
    json_sql, unnest_sql, row_sql = (percent_style(sql) for sql in (JSON_SQL, UNNEST_SQL, ROW_SQL))

    async def json(batch: list[bytes]) -> None:
        await conn.execute(json_sql, (as_json_array(batch),), prepare=True)

    async def copy_json(batch: list[bytes]) -> None:
        async with conn.transaction(), conn.cursor() as cur:
            async with cur.copy("COPY bench_docs (doc) FROM STDIN") as out:
                for raw in batch:
                    await out.write_row((raw.decode(),))
            await cur.execute(FROM_DOCS_SQL)

    async def unnest(batch: list[bytes]) -> None:
        await conn.execute(unnest_sql, [list(col) for col in zip(*map(as_texts, batch))], prepare=True)

    async def copy(batch: list[bytes]) -> None:
        async with conn.transaction(), conn.cursor() as cur:
            async with cur.copy(f"COPY bench_in ({', '.join(COLUMNS)}) FROM STDIN") as out:
                for row in map(as_texts, batch):
                    await out.write_row(row)
            await cur.execute(FROM_TEMP_SQL)

    async def executemany(batch: list[bytes]) -> None:
        async with conn.cursor() as cur:
            await cur.executemany(row_sql, list(map(as_texts, batch)))

    return {"json recordset": json, "copy json + insert": copy_json, "unnest arrays": unnest,
            "copy + insert": copy, "executemany": executemany}


async def measure(url: str, driver: str, n: int) -> list[dict[str, Any]]:
    import asyncpg

    admin = await asyncpg.connect(url)
    ways = await (asyncpg_ways(url) if driver == "asyncpg" else psycopg_ways(url))
    rows = outbox_rows(n)
    results = []
    for way, send in ways.items():
        await admin.execute("DROP TABLE IF EXISTS bench_signals")
        await admin.execute(TABLE)
        rates = []
        for _ in ("insert", "update"):
            start = time.perf_counter()
            for i in range(0, n, BATCH):
                await send(rows[i:i + BATCH])
            rates.append(n / (time.perf_counter() - start))
        assert await admin.fetchval("SELECT count(*) FROM bench_signals") == n
        results.append({"name": f"{driver}, {way}", "insert_rows_per_s": round(rates[0]),
                        "update_rows_per_s": round(rates[1])})
    await admin.execute("DROP TABLE IF EXISTS bench_signals")
    await admin.close()
    return results


def main() -> None:
    n = int(os.environ.get("N", 50_000))
    drivers = ["asyncpg"]
    if importlib.util.find_spec("psycopg") is None:
        print("psycopg is not installed: only asyncpg is measured (pip install 'psycopg[binary]')")
    else:
        drivers.append("psycopg")
    with database_url() as url:
        results = [row for driver in drivers for row in asyncio.run(measure(url, driver, n))]
    width = max(len(r["name"]) for r in results)
    print(f"\nbatch upserts of {n:,} signal rows, {BATCH} per batch (rows/s)")
    print(f"{'name'.ljust(width)}  {'insert':>10}  {'update':>10}")
    for r in results:
        print(f"{r['name'].ljust(width)}  {r['insert_rows_per_s']:>10,}  {r['update_rows_per_s']:>10,}")
    print()
    for r in results:
        print(orjson.dumps(r).decode())


if __name__ == "__main__":
    main()
