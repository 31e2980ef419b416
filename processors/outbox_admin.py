"""What operators see and do of the PostgreSQL sink, from Redis alone (no database
connection): its lag, rows written and dead letters (rows the database rejected), which
can be listed, replayed into their company's outbox, or purged. The API, `tgjobs status`
and `tgjobs db dlq` call it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import re

import orjson
from redis.asyncio import Redis

from config import Settings
from processors.outbox import Outbox
from processors.record_keys import CompanyKeys, SinkKeys

ENTRY_ID = re.compile(r"^[0-9]{1,20}-[0-9]{1,20}$")
LAG_PAGE = 1000  # waiting companies per pipeline of XLEN
SELECT_PAGE = 500


@dataclass(frozen=True, slots=True)
class SinkFigures:
    enabled: bool  # DATABASE_URL is set in the process that read these
    lag: int  # outbox entries not yet written to PostgreSQL
    waiting_companies: int  # companies whose outbox holds entries, or may
    dead_letters: int
    rows_total: dict[str, int]  # table -> rows written (every sink process together)

    def as_dict(self) -> dict[str, Any]:
        return {"enabled": self.enabled, "lag": self.lag, "waitingCompanies": self.waiting_companies,
                "deadLetters": self.dead_letters, "rowsTotal": self.rows_total}


@dataclass(frozen=True, slots=True)
class SinkDeadLetter:
    entry_id: str
    company_id: str
    table: str
    row: Any
    error: str
    failed_at: int
    outbox_entry: str

    @classmethod
    def from_entry(cls, entry_id: str, fields: dict[str, str]) -> SinkDeadLetter:
        try:
            row = orjson.loads(fields.get("row", "null"))
        except orjson.JSONDecodeError:
            row = fields.get("row")
        return cls(entry_id, fields.get("company", ""), fields.get("table", ""), row, fields.get("error", ""),
                   int(fields.get("failedAt", 0) or 0), fields.get("entry", ""))

    def as_dict(self) -> dict[str, Any]:
        row_id = self.row.get("id") if isinstance(self.row, dict) else None
        return {"id": self.entry_id, "companyId": self.company_id, "table": self.table, "rowId": row_id,
                "row": self.row, "error": self.error, "failedAt": self.failed_at, "outboxEntry": self.outbox_entry}


class OutboxAdmin:
    def __init__(self, redis: Redis, settings: Settings) -> None:
        self.redis = redis
        self.settings = settings
        self.keys = SinkKeys(settings.key_prefix)

    async def figures(self) -> SinkFigures:
        waiting = await self.redis.zrange(self.keys.waiting, 0, -1)
        lag = 0
        for start in range(0, len(waiting), LAG_PAGE):
            async with self.redis.pipeline(transaction=False) as pipe:
                for company in waiting[start:start + LAG_PAGE]:
                    pipe.xlen(CompanyKeys(self.settings.key_prefix, company).outbox)
                lag += sum(await pipe.execute())
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.xlen(self.keys.dead)
            pipe.hgetall(self.keys.totals)
            dead, totals = await pipe.execute()
        return SinkFigures(self.settings.sink_enabled, lag, len(waiting), dead,
                           {table: int(n) for table, n in sorted(totals.items())})

    async def dead_letters(self, after: str = "-", limit: int = 100) -> list[SinkDeadLetter]:
        start = after if after == "-" else f"({after}"
        entries = await self.redis.xrange(self.keys.dead, start, "+", count=limit)
        return [SinkDeadLetter.from_entry(entry_id, fields) for entry_id, fields in entries]

    async def replay(self, ids: Sequence[str] | None = None) -> list[str]:
        """Puts each chosen dead letter's row back into its company's outbox and deletes
        the letter; returns the replayed letters' ids. The sink writes them again."""
        letters = await self._select(ids)
        if not letters:
            return []
        outbox = Outbox(self.redis, self.settings, enabled=True)
        await outbox.register(letter.company_id for letter in letters)
        for letter in letters:
            async with self.redis.pipeline(transaction=True) as pipe:
                outbox.append(pipe, CompanyKeys(self.settings.key_prefix, letter.company_id),
                              {letter.table: [letter.row]})
                await pipe.execute()
        await outbox.notify(letter.company_id for letter in letters)
        await self.redis.xdel(self.keys.dead, *(letter.entry_id for letter in letters))
        return [letter.entry_id for letter in letters]

    async def purge(self, ids: Sequence[str] | None = None) -> int:
        if ids is None:
            async with self.redis.pipeline(transaction=True) as pipe:
                length, _ = await pipe.xlen(self.keys.dead).delete(self.keys.dead).execute()
            return int(length)
        valid = [i for i in ids if ENTRY_ID.match(i)]
        return int(await self.redis.xdel(self.keys.dead, *valid)) if valid else 0

    async def _select(self, ids: Sequence[str] | None) -> list[SinkDeadLetter]:
        if ids is not None:
            found = []
            for entry_id in dict.fromkeys(i for i in ids if ENTRY_ID.match(i)):
                entries = await self.redis.xrange(self.keys.dead, entry_id, entry_id)
                found += [SinkDeadLetter.from_entry(i, fields) for i, fields in entries]
            return found
        letters: list[SinkDeadLetter] = []
        after = "-"
        while page := await self.dead_letters(after, SELECT_PAGE):
            letters += page
            after = page[-1].entry_id
        return letters
