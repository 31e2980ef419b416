"""The sink's Redis side: read a batch of outbox entries from the companies waiting to
be drained, and settle it once PostgreSQL has it (rejected rows to the dead letters,
entries acked and deleted, totals counted, drained companies forgotten). A sweep now
and then finds entries whose notification was lost and takes over a stopped sink's.

Each company's outbox has a consumer group `sink`; every sink process is a consumer of
it. Called by the sink (sink.runner); the figures and dead letters are outbox_admin's.
"""

from __future__ import annotations

import logging
import os
import secrets
import socket
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson
from redis.asyncio import Redis
from redis.exceptions import ResponseError

from config import Settings
from processors.outbox import ROWS_FIELD, Row
from processors.periods import now_ms
from processors.record_keys import CompanyKeys, SinkKeys
from streams.scripts import script_source

log = logging.getLogger(__name__)

SINK_GROUP = "sink"
COMPANIES_PER_READ = 500  # waiting companies one read round visits at most
MIN_ENTRIES_PER_COMPANY = 16
SWEEP_PAGE = 500


def sink_consumer_name() -> str:
    return f"sink-{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(3)}"


@dataclass(slots=True)
class OutboxEntry:
    company_id: str
    entry_id: str
    rows: dict[str, list[Row]]  # table -> rows


@dataclass(frozen=True, slots=True)
class Rejected:
    """A row PostgreSQL refused, with its reason; it becomes a dead letter."""

    entry: OutboxEntry
    table: str
    row: Row
    reason: str


@dataclass(slots=True)
class OutboxBatch:
    entries: list[OutboxEntry] = field(default_factory=list)
    drained: dict[str, float] = field(default_factory=dict)  # company -> waiting counter read before draining
    recovered: list[str] = field(default_factory=list)  # companies whose taken-over entries are all read

    def rows(self) -> dict[str, list[tuple[OutboxEntry, Row]]]:
        """Every row by table, in outbox order, each with the entry it came in."""
        tables: dict[str, list[tuple[OutboxEntry, Row]]] = {}
        for entry in self.entries:
            for table, rows in entry.rows.items():
                tables.setdefault(table, []).extend((entry, row) for row in rows)
        return tables


class OutboxDrain:
    def __init__(self, redis: Redis, settings: Settings, consumer: str | None = None) -> None:
        self.redis = redis
        self.settings = settings
        self.prefix = settings.key_prefix
        self.keys = SinkKeys(settings.key_prefix)
        self.consumer = consumer or sink_consumer_name()
        self._grouped: set[str] = set()  # companies whose outbox has the sink group (seen by this process)
        self._own_pending: set[str] = set()  # companies with entries claimed to this consumer, not read yet
        self._settle = redis.register_script(script_source("outbox_settle", "processors"))

    def outbox(self, company_id: str) -> str:
        return CompanyKeys(self.prefix, company_id).outbox

    # -- reading -------------------------------------------------------------------------

    async def read(self) -> OutboxBatch:
        """Up to `sink_batch_size` entries from the waiting companies (entries this
        consumer took over first). Empty when nothing waits."""
        waiting = await self.redis.zrange(self.keys.waiting, 0, COMPANIES_PER_READ - 1, withscores=True)
        batch = OutboxBatch()
        if not waiting:
            return batch
        count = max(MIN_ENTRIES_PER_COMPANY, self.settings.sink_batch_size // len(waiting))
        companies = [company for company, _ in waiting]
        replies = await self._read_groups(companies, count)
        for (company, score), reply in zip(waiting, replies):
            entries = reply[0][1] if reply else []
            batch.entries += [_entry(company, entry_id, fields) for entry_id, fields in entries]
            if company in self._own_pending:
                if not entries:
                    self._own_pending.discard(company)
                    batch.recovered.append(company)
            elif len(entries) < count:
                batch.drained[company] = score
        return batch

    async def _read_groups(self, companies: Sequence[str], count: int) -> list[Any]:
        """One XREADGROUP per company in one pipeline; a missing group is created (from
        the start of the stream) and that company read again."""
        replies: list[Any] = [None] * len(companies)
        todo = list(range(len(companies)))
        for _ in range(2):
            async with self.redis.pipeline(transaction=False) as pipe:
                for i in todo:
                    start = "0" if companies[i] in self._own_pending else ">"
                    pipe.xreadgroup(SINK_GROUP, self.consumer, {self.outbox(companies[i]): start}, count=count)
                answers = await pipe.execute(raise_on_error=False)
            missing = []
            for i, answer in zip(todo, answers):
                if isinstance(answer, ResponseError) and "NOGROUP" in str(answer):
                    missing.append(i)
                elif isinstance(answer, Exception):
                    raise answer
                else:
                    replies[i] = answer
                    self._grouped.add(companies[i])
            if not missing:
                break
            await self._create_groups(companies[i] for i in missing)
            todo = missing
        return replies

    async def _create_groups(self, companies: Iterable[str]) -> None:
        async with self.redis.pipeline(transaction=False) as pipe:
            for company in companies:
                pipe.xgroup_create(self.outbox(company), SINK_GROUP, id="0", mkstream=True)
            for answer in await pipe.execute(raise_on_error=False):
                if isinstance(answer, Exception) and "BUSYGROUP" not in str(answer):
                    raise answer

    # -- settling --------------------------------------------------------------------------

    async def settle(self, batch: OutboxBatch, written: dict[str, int], rejected: Sequence[Rejected]) -> None:
        """After PostgreSQL committed the batch: dead letters for the rejected rows first
        (a crash after them repeats the batch, whose upserts change nothing), then the
        entries acked and deleted, the totals counted and the drained companies forgotten."""
        if rejected:
            now = now_ms()
            async with self.redis.pipeline(transaction=False) as pipe:
                for r in rejected:
                    pipe.xadd(self.keys.dead, {"company": r.entry.company_id, "table": r.table,
                                               "row": orjson.dumps(r.row), "error": r.reason,
                                               "entry": r.entry.entry_id, "failedAt": now},
                              maxlen=self.settings.dead_letter_max_len, approximate=True)
                await pipe.execute()
        by_company: dict[str, list[str]] = {}
        for entry in batch.entries:
            by_company.setdefault(entry.company_id, []).append(entry.entry_id)
        async with self.redis.pipeline(transaction=False) as pipe:
            for company, ids in by_company.items():
                pipe.xack(self.outbox(company), SINK_GROUP, *ids)
                pipe.xdel(self.outbox(company), *ids)
            for table, count in written.items():
                if count:
                    pipe.hincrby(self.keys.totals, table, count)
            await pipe.execute()
        await self.forget(batch.drained)

    async def forget(self, drained: dict[str, float]) -> int:
        """Drained companies leave the waiting set, but one whose outbox still holds
        entries (unacked by a sink that stopped) stays: its lag still counts, and the
        sweep hands those entries over. Returns how many left."""
        if not drained:
            return 0
        companies = list(drained)
        async with self.redis.pipeline(transaction=False) as pipe:
            for company in companies:
                pipe.xlen(self.outbox(company))
            lengths = await pipe.execute()
        empty = [c for c, length in zip(companies, lengths) if not length]
        if not empty:
            return 0
        return int(await self._settle(keys=[self.keys.waiting], args=[v for c in empty for v in (c, drained[c])]))

    # -- sweeping ----------------------------------------------------------------------------

    async def sweep(self) -> int:
        """Every company with an outbox: one whose outbox holds entries is marked waiting
        again (its notification may have been lost in a crash), and entries another sink
        left unacked longer than `sink_claim_after` are taken over by this one. Returns
        how many entries were taken over."""
        claimed = 0
        idle_ms = int(self.settings.sink_claim_after * 1000)
        cursor = 0
        while True:
            cursor, companies = await self.redis.sscan(self.keys.outboxes, cursor, count=SWEEP_PAGE)
            companies = list(companies)
            if companies:
                async with self.redis.pipeline(transaction=False) as pipe:
                    for company in companies:
                        pipe.xlen(self.outbox(company))
                    lengths = await pipe.execute()
                held = [c for c, length in zip(companies, lengths) if length]
                if held:
                    claimed += await self._take_over(held, idle_ms)
                    async with self.redis.pipeline(transaction=False) as pipe:
                        for company in held:
                            pipe.zincrby(self.keys.waiting, 1, company)
                        await pipe.execute()
            if cursor == 0:
                return claimed

    async def _take_over(self, companies: Sequence[str], idle_ms: int) -> int:
        claimed = 0
        async with self.redis.pipeline(transaction=False) as pipe:
            for company in companies:
                pipe.xautoclaim(self.outbox(company), SINK_GROUP, self.consumer, idle_ms, "0-0",
                                count=self.settings.sink_batch_size, justid=True)
            answers = await pipe.execute(raise_on_error=False)
        for company, answer in zip(companies, answers):
            if isinstance(answer, Exception):
                if "NOGROUP" not in str(answer):
                    raise answer
                continue
            ids = list(answer)  # with JUSTID, redis-py gives the claimed ids alone
            if ids:
                claimed += len(ids)
                self._own_pending.add(company)
                log.info("sink %s took over %d unacked outbox entries of company %s", self.consumer,
                         len(ids), company)
        return claimed


def _entry(company: str, entry_id: str, fields: dict[str, str]) -> OutboxEntry:
    try:
        rows = orjson.loads(fields[ROWS_FIELD])
    except (KeyError, orjson.JSONDecodeError):
        rows = {}
    if not isinstance(rows, dict):
        rows = {}
    return OutboxEntry(company, entry_id, rows)
