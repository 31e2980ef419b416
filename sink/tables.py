"""The tables the sink writes, each with its upsert: one statement per table and batch,
`INSERT ... ON CONFLICT (id) DO UPDATE`, the rows arriving as one JSON array (or, for a
large batch, COPYed into a temporary table first). Rows of one id within a batch are
merged first: PostgreSQL refuses to update a row twice in one statement.

Updates never go back in time: a contact or report row older than the stored one
changes nothing, and a company's intent score only moves forward with `intent_at`.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

Row = dict[str, Any]
COPY_TABLE = "tgjobs_sink_in"
COPY_TABLE_SQL = f"CREATE TEMP TABLE IF NOT EXISTS {COPY_TABLE} (doc text) ON COMMIT DELETE ROWS"


@dataclass(frozen=True, slots=True)
class Table:
    name: str
    columns: tuple[str, ...]
    timestamps: tuple[str, ...]  # columns a writer may give as epoch milliseconds
    updates: dict[str, str]  # column -> its value on conflict (default: the new row's)
    guard: str = ""  # the DO UPDATE's WHERE: when the stored row wins

    def upsert_sql(self, schema: str, *, copied: bool) -> str:
        qualified = f'"{schema}".{self.name}'
        source = (f"{COPY_TABLE} AS i, jsonb_populate_record(NULL::{qualified}, i.doc::jsonb) AS r" if copied
                  else f"jsonb_populate_recordset(NULL::{qualified}, $1::jsonb) AS r")
        columns = ", ".join(self.columns)
        sets = ", ".join(f"{c} = {self.updates.get(c, f'EXCLUDED.{c}')}" for c in self.columns if c != "id")
        where = f" WHERE {self.guard}" if self.guard else ""
        return (f"INSERT INTO {qualified} AS t ({columns}) SELECT {', '.join(f'r.{c}' for c in self.columns)} "
                f"FROM {source} ON CONFLICT (id) DO UPDATE SET {sets}{where}")

    def normalised(self, row: Row) -> Row:
        """The row with epoch-millisecond timestamps as ISO texts (Lua writes numbers)."""
        for column in self.timestamps:
            value = row.get(column)
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                row[column] = datetime.fromtimestamp(value / 1000, UTC).isoformat()
        return row


def merged(rows: Iterable[Row]) -> dict[Any, Row]:
    """One row per id, later rows' fields over earlier ones' (a company's profile and its
    intent score arrive as separate partial rows); insertion order is first sight."""
    by_id: dict[Any, Row] = {}
    for row in rows:
        key = row.get("id")
        by_id[key] = {**by_id[key], **row} if key in by_id else row
    return by_id


NEWER = "t.updated_at <= EXCLUDED.updated_at"

TABLES: dict[str, Table] = {t.name: t for t in (
    Table("companies", ("id", "name", "domain", "intent_score", "intent_at", "updated_at"),
          ("intent_at", "updated_at"),
          {"name": "COALESCE(EXCLUDED.name, t.name)", "domain": "COALESCE(EXCLUDED.domain, t.domain)",
           "intent_score": "CASE WHEN EXCLUDED.intent_at IS NOT NULL AND (t.intent_at IS NULL OR "
                           "EXCLUDED.intent_at >= t.intent_at) THEN EXCLUDED.intent_score ELSE t.intent_score END",
           "intent_at": "GREATEST(t.intent_at, EXCLUDED.intent_at)",
           "updated_at": "GREATEST(t.updated_at, EXCLUDED.updated_at)"}),
    Table("contacts", ("id", "company_id", "email", "email_status", "linkedin_url", "title", "data", "updated_at"),
          ("updated_at",), {}, NEWER),
    Table("research", ("id", "company_id", "job_id", "summary", "data", "created_at"), ("created_at",), {}),
    Table("reports", ("id", "company_id", "report_type", "period_start", "period_end", "data", "html", "created_at",
                      "updated_at"), ("created_at", "updated_at"),
          {"html": "COALESCE(EXCLUDED.html, t.html)", "created_at": "t.created_at"}, NEWER),
    Table("signals", ("id", "company_id", "signal_type", "contact_id", "occurred_at", "data", "received_at"),
          ("occurred_at", "received_at"), {"received_at": "LEAST(t.received_at, EXCLUDED.received_at)"}),
)}
