"""Commands of the PostgreSQL sink: `db migrate`, `db status` (migrations and the
outbox's figures), `db dlq list|replay|purge` (rows the database rejected), and `sink`,
the sink alone. Each needs DATABASE_URL; `require_current_schema` is what `workers`
and `up` call first, so they refuse a schema that is behind (exit 2).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from typing import Any

from cli.common import EXIT_USAGE, CliError, CommandAdder, print_json, print_table, run_with_redis
from config import Settings
from processors.outbox_admin import ENTRY_ID, OutboxAdmin, SinkFigures


def add_commands(command: CommandAdder) -> None:
    db = command("db", "the PostgreSQL records: migrate, status, dead letters (needs DATABASE_URL)", cmd_db)
    db.add_argument("action", choices=["migrate", "status", "dlq"])
    db.add_argument("dlq_action", nargs="?", choices=["list", "replay", "purge"], help="dlq: what to do")
    db.add_argument("--ids", help="dlq replay/purge: comma-separated dead-letter ids (default: every one)")
    db.add_argument("--limit", type=int, default=100, help="dlq list: at most this many (default 100)")
    db.add_argument("--after", default="-", help="dlq list: letters after this id (paging)")
    db.add_argument("--json", action="store_true", help="print the result as JSON")

    sink = command("sink", "write the outbox's records into PostgreSQL until stopped (needs DATABASE_URL)", cmd_sink)
    sink.add_argument("--burst", action="store_true", help="exit once the outbox is empty")


def _require_database(settings: Settings) -> None:
    if not settings.sink_enabled:
        raise CliError("DATABASE_URL is not set: there is no PostgreSQL to write records to", EXIT_USAGE)


def require_current_schema(settings: Settings) -> None:
    """Exit 2 when the database's schema is behind the package's; a database that does
    not answer now only gets a warning (the sink waits for it, the jobs do not)."""
    if not settings.sink_enabled:
        return
    from sink import DatabaseUnreachable, SchemaBehind, check_schema

    try:
        asyncio.run(check_schema(settings))
    except SchemaBehind as exc:
        raise CliError(str(exc), EXIT_USAGE) from None
    except DatabaseUnreachable as exc:
        print(f"tgjobs: warning: {exc}; records wait in the outbox until it answers", file=sys.stderr)


def cmd_db(args: argparse.Namespace, settings: Settings) -> int:
    _require_database(settings)
    if args.action == "migrate":
        return _migrate(args, settings)
    if args.action == "status":
        return _status(args, settings)
    return _dlq(args, settings)


def _database(action: Any) -> Any:
    from sink import DatabaseUnreachable

    try:
        return asyncio.run(action)
    except DatabaseUnreachable as exc:
        raise CliError(str(exc)) from None


def _migrate(args: argparse.Namespace, settings: Settings) -> int:
    from sink import apply_migrations

    applied = _database(apply_migrations(settings))
    if args.json:
        print_json({"schema": settings.database_schema, "applied": [m.version for m in applied]})
    elif applied:
        for migration in applied:
            print(f"applied {migration.version:04d} {migration.name}")
    else:
        print(f"schema {settings.database_schema}: up to date")
    return 0


def _status(args: argparse.Namespace, settings: Settings) -> int:
    from sink import schema_status

    current = _database(schema_status(settings))
    figures = run_with_redis(settings, lambda redis: OutboxAdmin(redis, settings).figures())
    if args.json:
        print_json({"schema": settings.database_schema, "version": current.version,
                    "applied": [{"version": a.version, "name": a.name, "appliedAt": a.applied_at.isoformat(),
                                 "changed": a.changed} for a in current.applied],
                    "pending": [{"version": m.version, "name": m.name} for m in current.pending],
                    "sink": figures.as_dict()})
        return 0
    rows = [[f"{a.version:04d}", a.name, "applied" + (" (file changed since)" if a.changed else ""),
             a.applied_at.strftime("%Y-%m-%d %H:%M:%S")] for a in current.applied]
    rows += [[f"{m.version:04d}", m.name, "pending", None] for m in current.pending]
    print_table(["version", "name", "state", "applied at"], rows)
    print(sink_line(figures))
    return 0


def sink_line(figures: SinkFigures) -> str:
    written = sum(figures.rows_total.values())
    return (f"sink: lag {figures.lag} outbox entries ({figures.waiting_companies} companies waiting), "
            f"{figures.dead_letters} dead letters, {written} rows written")


def _dlq(args: argparse.Namespace, settings: Settings) -> int:
    if args.dlq_action is None:
        raise CliError("db dlq: say list, replay or purge", EXIT_USAGE)
    ids = None
    if args.ids is not None:
        ids = [i.strip() for i in args.ids.split(",") if i.strip()]
        wrong = [i for i in ids if not ENTRY_ID.match(i)] or ([] if ids else ["(none)"])
        if wrong:
            raise CliError(f"--ids: {wrong[0]!r} is not a dead-letter id (such as 1700000000000-0)", EXIT_USAGE)
    if args.limit < 1:
        raise CliError("--limit must be at least 1", EXIT_USAGE)

    def admin(redis: Any) -> OutboxAdmin:
        return OutboxAdmin(redis, settings)

    if args.dlq_action == "list":
        letters = run_with_redis(settings, lambda redis: admin(redis).dead_letters(args.after, args.limit))
        if args.json:
            print_json([letter.as_dict() for letter in letters])
        else:
            print_table(["id", "table", "row", "company", "error"],
                        [[d.entry_id, d.table, d.as_dict()["rowId"], d.company_id, d.error] for d in letters])
        return 0
    if args.dlq_action == "replay":
        replayed = run_with_redis(settings, lambda redis: admin(redis).replay(ids))
        if args.json:
            print_json({"action": "replay", "replayed": replayed})
        else:
            print(f"replayed {len(replayed)} sink dead letter(s) into their outboxes")
        return 0
    purged = run_with_redis(settings, lambda redis: admin(redis).purge(ids))
    if args.json:
        print_json({"action": "purge", "purged": purged})
    else:
        print(f"purged {purged} sink dead letter(s)")
    return 0


def cmd_sink(args: argparse.Namespace, settings: Settings) -> int:
    _require_database(settings)
    require_current_schema(settings)
    from sink import serve_sink
    from sink.writer import DatabaseUnavailable

    try:
        asyncio.run(serve_sink(settings, burst=args.burst))
    except DatabaseUnavailable as exc:
        raise CliError(f"PostgreSQL at {settings.redacted_database_url()} cannot take the records: {exc}") from None
    return 0
