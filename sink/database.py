"""Connecting to PostgreSQL, and what the commands ask of it at start-up: migrate, show
the schema's status, and check that the schema is current before a sink starts.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TypeVar

import asyncpg

from config import Settings
from sink.migrations import Migration, SchemaStatus, check_current, migrate, status

T = TypeVar("T")


class DatabaseUnreachable(Exception):
    """PostgreSQL did not answer (down, refused, wrong credentials); the message is safe to show."""


async def connect(settings: Settings) -> asyncpg.Connection:
    return await asyncpg.connect(settings.database_dsn(), timeout=settings.database_timeout,
                                 command_timeout=settings.database_timeout)


async def _with_connection(settings: Settings, action: Callable[[asyncpg.Connection], Awaitable[T]]) -> T:
    try:
        conn = await connect(settings)
    except (OSError, asyncio.TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
        raise DatabaseUnreachable(f"cannot reach PostgreSQL at {settings.redacted_database_url()}: "
                                  f"{type(exc).__name__}: {exc}") from None
    try:
        return await action(conn)
    finally:
        await conn.close()


async def apply_migrations(settings: Settings) -> list[Migration]:
    return await _with_connection(settings, lambda conn: migrate(conn, settings.database_schema))


async def schema_status(settings: Settings) -> SchemaStatus:
    return await _with_connection(settings, lambda conn: status(conn, settings.database_schema))


async def check_schema(settings: Settings) -> None:
    """SchemaBehind when a migration is pending; DatabaseUnreachable when it cannot tell."""
    await _with_connection(settings, lambda conn: check_current(conn, settings.database_schema))
