"""Domain records in Redis: company profiles, contacts, research, reports and signal
analytics, under the key names of processors.record_keys. The processors write
through here, the API reads through here.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import date
from typing import Any

import orjson
from redis.asyncio import Redis
from redis.exceptions import WatchError

from config import Settings
from processors.outbox import Outbox, Row, company_row, contact_row, report_row, research_row
from processors.periods import now_ms
from processors.record_keys import COUNT_FIELD, CompanyKeys, DirectoryKeys
from processors.signal_figures import DayFigures, decayed

WATCH_RETRIES = 20


class Store:
    """Reads and writes the domain records; `redis` must decode replies to str."""

    def __init__(self, redis: Redis, settings: Settings) -> None:
        self.redis = redis
        self.settings = settings
        self.directory = DirectoryKeys(settings.key_prefix)
        self.outbox = Outbox(redis, settings)

    def company(self, company_id: str) -> CompanyKeys:
        return CompanyKeys(self.settings.key_prefix, company_id)

    # -- company profile -----------------------------------------------------------------

    async def save_profile(self, company_id: str, **fields: str | None) -> None:
        """Sets the given fields; None and empty values leave what is known alone."""
        known = {name: value for name, value in fields.items() if value}
        if not known:
            return
        keys, now = self.company(company_id), now_ms()
        await self.outbox.register([company_id])
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.hset(keys.profile, mapping={**known, "updatedAt": str(now)})
            self.outbox.append(pipe, keys, {"companies": [company_row(company_id, known, now)]})
            await pipe.execute()
        await self.outbox.notify([company_id])

    async def profile(self, company_id: str) -> dict[str, str]:
        return await self.redis.hgetall(self.company(company_id).profile)

    async def profiles(self, company_ids: Sequence[str]) -> list[dict[str, str]]:
        async with self.redis.pipeline(transaction=False) as pipe:
            for company_id in company_ids:
                pipe.hgetall(self.company(company_id).profile)
            return await pipe.execute()

    # -- signal analytics (written by record_signals.lua) ---------------------------------

    async def days(self, company_id: str, days: Sequence[date]) -> list[DayFigures]:
        keys = self.company(company_id)
        async with self.redis.pipeline(transaction=False) as pipe:
            for day in days:
                pipe.hgetall(keys.day(day))
            rows: list[dict[str, str]] = await pipe.execute()
        figures = []
        for day, row in zip(days, rows):
            counts = {name[len(COUNT_FIELD):]: int(value) for name, value in row.items()
                      if name.startswith(COUNT_FIELD)}
            intent = (float(row["intent"]), int(row["intentAt"])) if "intent" in row else None
            figures.append(DayFigures(day, counts, intent))
        return figures

    async def engaged_contacts(self, company_id: str, days: Sequence[date]) -> set[str]:
        keys = self.company(company_id)
        if not days:
            return set()
        return set(await self.redis.sunion([keys.day_contacts(day) for day in days]))

    async def newly_engaged(self, company_id: str, since_ms: int) -> list[str]:
        """Contacts whose first engagement was at or after `since_ms`, oldest first."""
        return await self.redis.zrangebyscore(self.company(company_id).engaged, since_ms, "+inf")

    async def intent_state(self, company_id: str) -> tuple[float, int] | None:
        """The stored score and the time it is as of, or None before any signal."""
        score, at = await self.redis.hmget(self.company(company_id).intent, ["score", "at"])
        return (float(score), int(at)) if score is not None and at is not None else None

    async def intent_score(self, company_id: str, at_ms: int | None = None) -> float:
        """The intent score decayed to `at_ms` (default now); 0 before any signal."""
        state = await self.intent_state(company_id)
        if state is None:
            return 0.0
        return decayed(state[0], state[1], at_ms or now_ms(), self.settings.intent_half_life)

    async def recent_signals(self, company_id: str, limit: int = 50) -> list[dict[str, Any]]:
        entries = await self.redis.lrange(self.company(company_id).signals, 0, max(limit, 1) - 1)
        return [orjson.loads(entry) for entry in entries]

    # -- contacts --------------------------------------------------------------------------

    async def contact(self, contact_id: str) -> dict[str, Any] | None:
        company_id = await self.redis.hget(self.directory.contacts, contact_id)
        if company_id is None:
            return None
        return await self._json(self.company(company_id).contact(contact_id))

    async def update_contact(self, company_id: str, contact_id: str,
                             change: Callable[[dict[str, Any] | None], dict[str, Any]]) -> dict[str, Any]:
        """Applies `change` to the stored record (None when there is none) and stores the
        result, atomically: a concurrent update of the same contact makes this one re-read
        and re-apply (optimistic locking on the record)."""
        keys = self.company(company_id)
        key = keys.contact(contact_id)
        moved_from = await self.redis.hget(self.directory.contacts, contact_id)
        if moved_from == company_id:
            moved_from = None
        await self.outbox.register([company_id])
        for _ in range(WATCH_RETRIES):
            async with self.redis.pipeline(transaction=True) as pipe:
                try:
                    await pipe.watch(key)
                    current = await pipe.get(key)
                    if current is None and moved_from is not None:
                        # The contact changed company: the new record starts from the old one.
                        current = await self.redis.get(self.company(moved_from).contact(contact_id))
                    record = change(orjson.loads(current) if current else None)
                    pipe.multi()
                    pipe.set(key, orjson.dumps(record))
                    pipe.sadd(keys.contacts, contact_id)
                    self.outbox.append(pipe, keys, {"contacts": [contact_row(contact_id, company_id, record, now_ms())]})
                    await pipe.execute()
                    break
                except WatchError:
                    continue
        else:
            raise RuntimeError(f"contact {contact_id!r} kept changing under {WATCH_RETRIES} updates")
        await self.outbox.notify([company_id])
        await self.redis.hset(self.directory.contacts, contact_id, company_id)
        if moved_from is not None:
            old = self.company(moved_from)
            async with self.redis.pipeline(transaction=True) as pipe:
                pipe.delete(old.contact(contact_id))
                pipe.srem(old.contacts, contact_id)
                await pipe.execute()
        return record

    async def company_contacts(self, company_id: str, limit: int = 100) -> list[dict[str, Any]]:
        keys = self.company(company_id)
        ids = sorted(await self.redis.smembers(keys.contacts))[:limit]
        if not ids:
            return []
        return [orjson.loads(raw) for raw in await self.redis.mget([keys.contact(i) for i in ids]) if raw]

    # -- research --------------------------------------------------------------------------

    async def save_research(self, record: dict[str, Any], generated_ms: int) -> None:
        company_id, research_id = record["companyId"], record["researchId"]
        keys = self.company(company_id)
        await self._save_record(company_id, research_id, generated_ms,
                                {keys.research(research_id): orjson.dumps(record)},
                                {"research": [research_row(record, generated_ms)]},
                                keys.research_index, self.directory.research,
                                lambda old: [keys.research(old)])

    async def research(self, research_id: str) -> dict[str, Any] | None:
        company_id = await self.redis.hget(self.directory.research, research_id)
        if company_id is None:
            return None
        return await self._json(self.company(company_id).research(research_id))

    async def latest_research(self, company_id: str) -> dict[str, Any] | None:
        keys = self.company(company_id)
        newest = await self.redis.zrevrange(keys.research_index, 0, 0)
        return await self._json(keys.research(newest[0])) if newest else None

    async def research_count(self, company_id: str, start_ms: int, end_ms: int) -> int:
        """Research records generated in [start_ms, end_ms)."""
        return await self.redis.zcount(self.company(company_id).research_index, start_ms, f"({end_ms}")

    # -- reports ---------------------------------------------------------------------------

    async def save_report(self, record: dict[str, Any], html: str, generated_ms: int) -> None:
        company_id, report_id = record["companyId"], record["reportId"]
        keys = self.company(company_id)
        await self._save_record(company_id, report_id, generated_ms,
                                {keys.report(report_id): orjson.dumps(record), keys.report_html(report_id): html},
                                {"reports": [report_row(record, html, generated_ms)]},
                                keys.report_index, self.directory.reports,
                                lambda old: [keys.report(old), keys.report_html(old)])

    async def report(self, report_id: str) -> dict[str, Any] | None:
        company_id = await self.redis.hget(self.directory.reports, report_id)
        if company_id is None:
            return None
        return await self._json(self.company(company_id).report(report_id))

    async def report_html(self, report_id: str) -> str | None:
        company_id = await self.redis.hget(self.directory.reports, report_id)
        if company_id is None:
            return None
        return await self.redis.get(self.company(company_id).report_html(report_id))

    async def update_report(self, company_id: str, report_id: str, **fields: Any) -> None:
        """Sets top-level fields of a stored report (its e-mail status). A report is
        written by the one job it is named after, so no other writer races this."""
        keys = self.company(company_id)
        record = await self._json(keys.report(report_id))
        if record is None:
            return
        record = {**record, **fields}
        await self.outbox.register([company_id])
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.set(keys.report(report_id), orjson.dumps(record))
            self.outbox.append(pipe, keys, {"reports": [report_row(record, None, now_ms())]})
            await pipe.execute()
        await self.outbox.notify([company_id])

    async def report_record(self, company_id: str, report_id: str) -> dict[str, Any] | None:
        return await self._json(self.company(company_id).report(report_id))

    # -- the company as the API shows it ---------------------------------------------------

    async def company_overview(self, company_id: str, days: Sequence[date]) -> dict[str, Any] | None:
        """Profile, intent score, signal counts over `days` (e.g. the last 30 local days),
        the latest research and the contacts; None when nothing is known of the company."""
        profile = await self.profile(company_id)
        state = await self.intent_state(company_id)
        figures = await self.days(company_id, days)
        latest = await self.latest_research(company_id)
        contacts = await self.company_contacts(company_id)
        if not (profile or state or latest or contacts or any(f.counts for f in figures)):
            return None
        by_type: dict[str, int] = {}
        for figure in figures:
            for name, count in figure.counts.items():
                by_type[name] = by_type.get(name, 0) + count
        now = now_ms()
        return {
            "companyId": company_id,
            "companyName": profile.get("companyName"),
            "domain": profile.get("domain"),
            "intentScore": round(decayed(state[0], state[1], now, self.settings.intent_half_life), 3)
            if state else 0.0,
            "analytics": {
                "from": days[0].isoformat() if days else None,
                "to": days[-1].isoformat() if days else None,
                "signals": sum(by_type.values()),
                "byType": by_type,
                "byDay": [{"date": f.day.isoformat(), "count": f.total} for f in figures],
            },
            "latestResearch": latest,
            "contacts": contacts,
        }

    # -- helpers ---------------------------------------------------------------------------

    async def _json(self, key: str) -> dict[str, Any] | None:
        raw = await self.redis.get(key)
        return orjson.loads(raw) if raw else None

    async def _save_record(self, company_id: str, record_id: str, generated_ms: int,
                           writes: dict[str, bytes | str], rows: dict[str, list[Row]], index: str, directory: str,
                           keys_of: Callable[[str], list[str]]) -> None:
        """Writes a record's keys and its outbox rows, indexes it by time and names it in
        the directory; then drops the company's records beyond `records_kept_per_company`
        from Redis, oldest first (PostgreSQL keeps them)."""
        await self.outbox.register([company_id])
        async with self.redis.pipeline(transaction=True) as pipe:
            for key, value in writes.items():  # not MSET: a cluster client refuses it in a transaction
                pipe.set(key, value)
            self.outbox.append(pipe, self.company(company_id), rows)
            pipe.zadd(index, {record_id: generated_ms})
            pipe.zrange(index, 0, -self.settings.records_kept_per_company - 1)
            *_, expired = await pipe.execute()
        await self.outbox.notify([company_id])
        await self.redis.hset(directory, record_id, company_id)
        if expired:
            async with self.redis.pipeline(transaction=True) as pipe:
                pipe.delete(*(key for old in expired for key in keys_of(old)))
                pipe.zrem(index, *expired)
                await pipe.execute()
            await self.redis.hdel(directory, *expired)
