"""Versioned SQL migrations shipped in the package (`sink/migrations/NNNN_name.sql`),
applied in order into DATABASE_SCHEMA and recorded in its `schema_migrations` table.

`migrate` holds a PostgreSQL advisory lock while it works, so two at once apply each
migration once (the second waits, then finds nothing pending); each migration and its
record commit together. Called by `tgjobs db migrate|status` and, to refuse a schema
that is behind, by every process that runs the sink.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from datetime import datetime
from functools import cache
from importlib import resources

import asyncpg

_FILE = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")
LOCK_NAMESPACE = "tgjobs:migrate:"


@dataclass(frozen=True, slots=True)
class Migration:
    version: int
    name: str
    sql: str

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.sql.encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class Applied:
    version: int
    name: str
    applied_at: datetime
    changed: bool  # the package's file of this version is no longer what was applied


@dataclass(frozen=True, slots=True)
class SchemaStatus:
    applied: list[Applied]
    pending: list[Migration]

    @property
    def version(self) -> int:
        return max((a.version for a in self.applied), default=0)


class SchemaBehind(Exception):
    """The database lacks migrations this package needs."""


@cache
def package_migrations() -> tuple[Migration, ...]:
    found = []
    for entry in (resources.files("sink") / "migrations").iterdir():
        match = _FILE.match(entry.name)
        if match:
            found.append(Migration(int(match[1]), match[2], entry.read_text()))
    return tuple(sorted(found, key=lambda m: m.version))


def package_version() -> int:
    return max((m.version for m in package_migrations()), default=0)


def _lock_key(schema: str) -> int:
    """A signed 64-bit advisory lock key for migrating `schema`."""
    digest = hashlib.sha256((LOCK_NAMESPACE + schema).encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


async def migrate(conn: asyncpg.Connection, schema: str) -> list[Migration]:
    """Applies the pending migrations; returns those applied now (none: already current)."""
    await conn.execute("SELECT pg_advisory_lock($1)", _lock_key(schema))
    try:
        await conn.execute(f'CREATE SCHEMA IF NOT EXISTS "{schema}"')
        await conn.execute(f'CREATE TABLE IF NOT EXISTS "{schema}".schema_migrations ('
                           "version integer PRIMARY KEY, name text NOT NULL, checksum text NOT NULL, "
                           "applied_at timestamptz NOT NULL DEFAULT now())")
        done = {row["version"] for row in await conn.fetch(f'SELECT version FROM "{schema}".schema_migrations')}
        applied = []
        for migration in package_migrations():
            if migration.version in done:
                continue
            async with conn.transaction():
                await conn.execute(f'SET LOCAL search_path TO "{schema}"')
                await conn.execute(migration.sql)
                await conn.execute(f'INSERT INTO "{schema}".schema_migrations (version, name, checksum) '
                                   "VALUES ($1, $2, $3)", migration.version, migration.name, migration.checksum)
            applied.append(migration)
        return applied
    finally:
        await conn.execute("SELECT pg_advisory_unlock($1)", _lock_key(schema))


async def status(conn: asyncpg.Connection, schema: str) -> SchemaStatus:
    exists = await conn.fetchval("SELECT to_regclass($1) IS NOT NULL", f'"{schema}".schema_migrations')
    rows = (await conn.fetch(f'SELECT version, name, checksum, applied_at FROM "{schema}".schema_migrations '
                             "ORDER BY version") if exists else [])
    known = {m.version: m for m in package_migrations()}
    applied = [Applied(r["version"], r["name"], r["applied_at"],
                       r["version"] in known and known[r["version"]].checksum != r["checksum"]) for r in rows]
    done = {a.version for a in applied}
    return SchemaStatus(applied, [m for m in package_migrations() if m.version not in done])


async def check_current(conn: asyncpg.Connection, schema: str) -> None:
    """SchemaBehind, with the one line to show, when a migration is pending."""
    current = await status(conn, schema)
    if current.pending:
        raise SchemaBehind(f"the database schema {schema!r} is at version {current.version}, this tgjobs needs "
                           f"{package_version()}: run `tgjobs db migrate`")
