"""The writers' side of the PostgreSQL outbox: the rows each record becomes, appended
to the company's outbox stream inside the same MULTI (or Lua script) as the record, so
no record exists without its row. Off (nothing appended) without a DATABASE_URL.

An outbox entry has one field, `rows`: a JSON object from table name to a list of
rows, each an object of the table's columns (README, "Records in PostgreSQL").
Timestamps are ISO 8601 texts, or epoch milliseconds where Lua writes them.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import orjson
from redis.asyncio import Redis
from redis.asyncio.client import Pipeline

from config import Settings
from processors.periods import iso_instant
from processors.record_keys import CompanyKeys, SinkKeys

ROWS_FIELD = "rows"
Row = dict[str, Any]


class Outbox:
    """Appends rows for one Redis client. Every append is bracketed: `register` before
    (the company joins the set a sweep walks), `notify` after (the sink drains it soon)."""

    def __init__(self, redis: Redis, settings: Settings, *, enabled: bool | None = None) -> None:
        self.redis = redis
        self.enabled = settings.sink_enabled if enabled is None else enabled
        self.keys = SinkKeys(settings.key_prefix)
        self._registered: set[str] = set()  # companies this process already added

    async def register(self, company_ids: Iterable[str]) -> None:
        if not self.enabled:
            return
        new = [c for c in dict.fromkeys(company_ids) if c not in self._registered]
        if new:
            await self.redis.sadd(self.keys.outboxes, *new)
            self._registered.update(new)

    def append(self, pipe: Pipeline, company: CompanyKeys, rows: dict[str, list[Row]]) -> None:
        """Queues the XADD on `pipe` (the MULTI that writes the records)."""
        if self.enabled:
            pipe.xadd(company.outbox, {ROWS_FIELD: orjson.dumps(rows)})

    async def notify(self, company_ids: Iterable[str]) -> None:
        if not self.enabled:
            return
        async with self.redis.pipeline(transaction=False) as pipe:
            for company_id in dict.fromkeys(company_ids):
                pipe.zincrby(self.keys.waiting, 1, company_id)
            await pipe.execute()


# -- the rows of each record, as the tables' columns ------------------------------------

def company_row(company_id: str, fields: dict[str, str], at_ms: int) -> Row:
    row: Row = {"id": company_id, "updated_at": iso_instant(at_ms)}
    if "companyName" in fields:
        row["name"] = fields["companyName"]
    if "domain" in fields:
        row["domain"] = fields["domain"]
    return row


def contact_row(contact_id: str, company_id: str, record: dict[str, Any], at_ms: int) -> Row:
    return {"id": contact_id, "company_id": company_id, "email": record.get("email"),
            "email_status": record.get("emailStatus"), "linkedin_url": record.get("linkedinUrl"),
            "title": record.get("title"), "data": record, "updated_at": iso_instant(at_ms)}


def research_row(record: dict[str, Any], generated_ms: int) -> Row:
    return {"id": record["researchId"], "company_id": record["companyId"], "job_id": record.get("jobId"),
            "summary": record.get("summary"), "data": record, "created_at": iso_instant(generated_ms)}


def report_row(record: dict[str, Any], html: str | None, updated_ms: int) -> Row:
    """`html` None (an update of the e-mail status) leaves the column out: the stored HTML stays."""
    row = {"id": record["reportId"], "company_id": record["companyId"], "report_type": record.get("reportType"),
           "period_start": record.get("periodStart"), "period_end": record.get("periodEnd"), "data": record,
           "created_at": record.get("generatedAt") or iso_instant(updated_ms), "updated_at": iso_instant(updated_ms)}
    if html is not None:
        row["html"] = html
    return row


def signal_row(signal_id: str, company_id: str, signal_type: str, contact_id: str | None, at_ms: int,
               data: dict[str, Any], received_ms: int) -> Row:
    return {"id": signal_id, "company_id": company_id, "signal_type": signal_type, "contact_id": contact_id,
            "occurred_at": iso_instant(at_ms), "data": data, "received_at": iso_instant(received_ms)}
