"""Writes a batch of outbox rows into PostgreSQL (asyncpg, chosen by
benchmarks/pg_drivers.py): per table one upsert statement, by COPY into a temporary
table when the table's share of the batch is large.

A row the database rejects (SQLSTATE class 22, data exception, or 23, integrity
constraint) comes back with the database's reason and the others are written; any other
failure (connection lost or refused, timeout, missing table, no permission) raises
DatabaseUnavailable and the whole batch is tried again later, as it is: every upsert is
idempotent.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from typing import Any

import asyncpg
import orjson

from config import Settings
from processors.outbox_drain import OutboxEntry, Rejected
from sink.database import connect
from sink.migrations import SchemaBehind, check_current
from sink.tables import COPY_TABLE, COPY_TABLE_SQL, TABLES, Row, merged

log = logging.getLogger(__name__)
REJECTED_CLASSES = ("22", "23")  # data exception, integrity constraint violation
Sourced = tuple[OutboxEntry, Row]


class DatabaseUnavailable(Exception):
    """PostgreSQL cannot take the batch now; try again after a while."""


def rejects_row(exc: BaseException) -> bool:
    sqlstate = getattr(exc, "sqlstate", None)
    return isinstance(exc, asyncpg.PostgresError) and bool(sqlstate) and sqlstate[:2] in REJECTED_CLASSES


def reason_of(exc: BaseException) -> str:
    sqlstate = getattr(exc, "sqlstate", None)
    detail = getattr(exc, "detail", None)
    text = f"{sqlstate} {type(exc).__name__}: {exc}" if sqlstate else f"{type(exc).__name__}: {exc}"
    return f"{text} ({detail})" if detail else text


class PgWriter:
    """One connection, opened on first use and again after it was lost."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.schema = settings.database_schema
        self._conn: asyncpg.Connection | None = None
        self._sql = {(name, copied): table.upsert_sql(self.schema, copied=copied)
                     for name, table in TABLES.items() for copied in (False, True)}

    async def close(self) -> None:
        if self._conn is not None:
            conn, self._conn = self._conn, None
            try:
                await asyncio.wait_for(conn.close(), self.settings.database_timeout)
            except Exception:  # a dead connection cannot close cleanly; drop it
                conn.terminate()

    async def write(self, tables: dict[str, list[Sourced]]) -> tuple[dict[str, int], list[Rejected]]:
        """Rows written per table, and the rejected rows."""
        written: dict[str, int] = {}
        rejected: list[Rejected] = []
        try:
            conn = await self._connection()
            for name, sourced in tables.items():
                table = TABLES.get(name)
                if table is None:
                    rejected += [Rejected(entry, name, row, f"no table {name!r} in the sink's schema")
                                 for entry, row in sourced]
                    continue
                rows = merged_sourced(table.name, sourced)
                written[name], refused = await self._upsert(conn, name, rows)
                rejected += refused
        except (OSError, asyncio.TimeoutError, asyncpg.InterfaceError, asyncpg.PostgresError, SchemaBehind) as exc:
            await self.close()
            raise DatabaseUnavailable(reason_of(exc)) from exc
        return written, rejected

    async def _connection(self) -> asyncpg.Connection:
        if self._conn is None or self._conn.is_closed():
            conn = await connect(self.settings)
            try:
                await check_current(conn, self.schema)
                await conn.execute(COPY_TABLE_SQL)
            except BaseException:
                conn.terminate()
                raise
            self._conn = conn
        return self._conn

    async def _upsert(self, conn: asyncpg.Connection, name: str, rows: list[Sourced]) -> tuple[int, list[Rejected]]:
        try:
            await self._send(conn, name, [row for _, row in rows])
            return len(rows), []
        except asyncpg.PostgresError as exc:
            if not rejects_row(exc) or len(rows) == 1:
                if rejects_row(exc):
                    return 0, [Rejected(rows[0][0], name, rows[0][1], reason_of(exc))]
                raise
        # Some row is refused: halve until each refused row stands alone.
        middle = len(rows) // 2
        first = await self._upsert(conn, name, rows[:middle])
        second = await self._upsert(conn, name, rows[middle:])
        return first[0] + second[0], first[1] + second[1]

    async def _send(self, conn: asyncpg.Connection, name: str, rows: Sequence[Row]) -> None:
        if len(rows) >= self.settings.sink_copy_rows:
            async with conn.transaction():
                await conn.copy_records_to_table(COPY_TABLE, records=[(orjson.dumps(r).decode(),) for r in rows])
                await conn.execute(self._sql[name, True])
        else:
            await conn.execute(self._sql[name, False], orjson.dumps(rows).decode())


def merged_sourced(name: str, sourced: list[Sourced]) -> list[Sourced]:
    """One row per id, normalised, each with the last entry that carried it."""
    table = TABLES[name]
    last: dict[Any, OutboxEntry] = {}
    for entry, row in sourced:
        last[row.get("id")] = entry
    rows = merged(table.normalised(dict(row)) for _, row in sourced)
    return [(last[key], row) for key, row in rows.items()]
