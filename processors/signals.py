"""The signals processor: validates each signal's type, records it at most once per
signalId (history, per-day counters, engaged contacts, decayed intent score) and fires
the trigger rules. `process_signals` takes a whole batch (the fast path's unit: one
pipeline for all its effects); `handle` runs one signal as a regular job.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import orjson
from pydantic import ValidationError
from redis.asyncio import Redis
from redis.exceptions import NoScriptError

from config import Settings
from processors.models import SignalData
from processors.outbox import signal_row
from processors.periods import LocalDays, iso_instant, now_ms, parse_instant
from processors.record_keys import COUNT_FIELD, CompanyKeys
from processors.store import Store
from processors.triggers import Trigger, contact_id, enrichment_trigger, research_trigger
from streams import JobContext, JobSpec, Producer, UnrecoverableError
from streams import tracing
from streams.context import BatchHandler, batch_handler
from streams.replication import ReplicaWait
from streams.scripts import script_source

log = logging.getLogger(__name__)

SCRIPT = "record_signals"
JOB_CHANGE = "Job Change"
PIPELINE_SIGNALS = 128  # signals per pipeline of script calls (see _record_all)
# Event times this far ahead of the worker's clock are skew, not the future: counted now.
FUTURE_SKEW_MS = 5 * 60 * 1000


@dataclass(slots=True)
class SignalResult:
    signal_id: str
    duplicate: bool = False
    intent_score: float | None = None
    triggers: list[Trigger] = field(default_factory=list)
    error: str | None = None  # the signal can never be processed (e.g. unknown type)

    def as_dict(self) -> dict[str, Any]:
        return {"signalId": self.signal_id, "duplicate": self.duplicate,
                "intentScore": self.intent_score, "triggers": [t.as_dict() for t in self.triggers]}


@dataclass(slots=True)
class _CompanyBatch:
    """One company's signals of a batch, as one call of record_signals.lua."""

    keys_of: CompanyKeys
    company_id: str  # '' when there is no outbox
    now: int
    today_expiry: int
    indices: list[int] = field(default_factory=list)  # positions in the caller's list
    keys: list[str] = field(default_factory=list)
    rows: list[Any] = field(default_factory=list)  # one list of 11 values per signal
    _slots: dict[str, int] = field(default_factory=dict)

    def args(self, limits: bytes) -> list[Any]:
        return [limits, self.now, self.today_expiry, orjson.dumps(self.rows), self.company_id]

    def slot(self, key: str) -> int:
        """The 1-based KEYS index of `key`, adding it once."""
        slot = self._slots.get(key)
        if slot is None:
            self.keys.append(key)
            slot = self._slots[key] = len(self.keys)
        return slot


class SignalProcessor:
    def __init__(self, settings: Settings, redis: Redis, producer: Producer | None = None) -> None:
        self.settings = settings
        self.redis = redis
        self.store = Store(redis, settings)
        self.outbox = self.store.outbox
        self.producer = producer or Producer(redis, settings)
        self.types = frozenset(settings.signal_types)
        self.days = LocalDays(settings.zone)
        # record_signals.lua's ARGV[1]: the settings it applies, encoded once.
        self._limits = orjson.dumps([
            int(settings.intent_half_life * 1000), settings.signal_history_max,
            int(settings.signal_dedupe_window * 1000), settings.intent_threshold,
            int(settings.intent_trigger_cooldown * 1000), int(settings.job_change_cooldown * 1000)])
        self._source = script_source(SCRIPT, "processors")
        self._sha: str | None = None
        self._wait = ReplicaWait(redis, settings)

    async def load(self) -> None:
        """Loads the script; call at start-up so a broken script fails there."""
        self._sha = await self.redis.script_load(self._source)

    async def handle(self, ctx: JobContext) -> dict[str, Any]:
        """One signal as a regular job; an unknown type or malformed data is unrecoverable."""
        try:
            signal = SignalData.model_validate(ctx.data)
        except ValidationError as exc:
            raise UnrecoverableError(f"invalid signal: {exc}") from None
        (result,) = await self.process_signals([signal])
        if result.error:
            raise UnrecoverableError(result.error)
        return result.as_dict()

    def batch_handler(self) -> BatchHandler:
        """The fast path's handler: a whole batch read by the worker in one
        `process_signals` call (one pipeline of script calls, one per company). Per item:
        the seed's result, or an UnrecoverableError for invalid data or an unknown type
        (that entry alone is dead-lettered); a Redis error fails the whole batch, which is
        safe to run again (idempotent by signalId)."""

        @batch_handler
        async def handle_batch(jobs: Sequence[JobContext]) -> list[Any]:
            outcomes: list[Any] = [None] * len(jobs)
            valid: list[tuple[int, SignalData]] = []
            for index, ctx in enumerate(jobs):
                try:
                    valid.append((index, SignalData.model_validate(ctx.data)))
                except ValidationError as exc:
                    outcomes[index] = UnrecoverableError(f"invalid signal: {exc}")
            if valid:
                with tracing.span("signals batch", {"tgjobs.signals": len(valid)}):
                    results = await self.process_signals([signal for _, signal in valid])
                for (index, _), result in zip(valid, results):
                    outcomes[index] = UnrecoverableError(result.error) if result.error else result.as_dict()
            return outcomes

        return handle_batch  # type: ignore[return-value]

    async def process_signals(self, signals: Sequence[SignalData]) -> list[SignalResult]:
        """Results in the order of `signals`. A signal that can never succeed gets a result
        with `error` set and changes nothing; Redis errors raise, and the whole batch can be
        run again safely (every effect is idempotent by signalId)."""
        results = [SignalResult(s.signalId) for s in signals]
        by_company: dict[str, list[int]] = {}
        for index, signal in enumerate(signals):
            if signal.signalType not in self.types:
                results[index].error = (f"unknown signalType {signal.signalType!r}; configured types: "
                                        f"{', '.join(self.settings.signal_types)}")
            else:
                by_company.setdefault(signal.companyId, []).append(index)
        if not by_company:
            return results
        await self.outbox.register(by_company)
        batches, replies = await self._record_all(signals, by_company)
        await self.outbox.notify(b.company_id for b in batches if b.company_id)
        pending: list[tuple[SignalResult, SignalData, str]] = []
        for batch, reply in zip(batches, replies):
            _, rows = reply
            for index, (duplicate, score, claimed) in zip(batch.indices, rows):
                result = results[index]
                result.duplicate = bool(int(duplicate))
                result.intent_score = round(float(score), 3)
                pending += [(result, signals[index], queue) for queue in claimed.split(",") if queue]
        if pending:
            await self._enqueue_triggers(pending)
        return results

    # -- the record_signals.lua call ----------------------------------------------------

    async def _record_all(self, signals: Sequence[SignalData], by_company: dict[str, list[int]]
                          ) -> tuple[list[_CompanyBatch], list[Any]]:
        """Builds each company's call and sends them in pipelines of about
        PIPELINE_SIGNALS signals, each sent as soon as it is built: Redis runs one
        pipeline's scripts while the next is being built. Companies' keys are disjoint,
        so the pipelines' order does not matter; one company is always one call."""
        now = now_ms()
        received = iso_instant(now)
        batches: list[_CompanyBatch] = []
        sending: list[asyncio.Task[list[Any]]] = []
        start = built = 0
        for company_id, indices in by_company.items():
            batch = self._new_batch(company_id, now)
            for index in indices:
                self._add(batch, index, signals[index], received)
            batches.append(batch)
            built += len(indices)
            if built >= PIPELINE_SIGNALS:
                sending.append(asyncio.create_task(self._record(batches[start:])))
                start, built = len(batches), 0
                await asyncio.sleep(0)  # let it go out before building the next
        if start < len(batches):
            sending.append(asyncio.create_task(self._record(batches[start:])))
        try:
            replies = [reply for chunk in await asyncio.gather(*sending) for reply in chunk]
        finally:
            for task in sending:  # on an error, none is left running
                task.cancel()
        return batches, replies

    def _new_batch(self, company_id: str, now: int) -> _CompanyBatch:
        keys = self.store.company(company_id)
        today, today_ends = self.days.of(now)
        batch = _CompanyBatch(keys, company_id if self.outbox.enabled else "", now, self._expiry(today_ends))
        for key in (keys.signals, keys.intent, keys.engaged, keys.research_cooldown, keys.day(today), keys.outbox):
            batch.slot(key)
        return batch

    def _add(self, batch: _CompanyBatch, index: int, signal: SignalData, received: str) -> None:
        keys, now = batch.keys_of, batch.now
        at = _event_time(signal.data, now)
        day, day_ends = self.days.of(at)
        contact = contact_id(signal.data)
        contacts_slot = batch.slot(keys.day_contacts(day)) if contact else 0
        cooldown_slot = (batch.slot(keys.contact_cooldown(contact))
                         if contact and signal.signalType == JOB_CHANGE else 0)
        entry = orjson.dumps({"signalId": signal.signalId, "signalType": signal.signalType,
                              "at": received if at == now else iso_instant(at), "receivedAt": received,
                              "data": signal.data})
        batch.rows.append([batch.slot(keys.seen(signal.signalId)), batch.slot(keys.day(day)), contacts_slot,
                           cooldown_slot, COUNT_FIELD + signal.signalType,
                           self.settings.signal_weights[signal.signalType], str(at), str(self._expiry(day_ends)),
                           contact or "", entry.decode(), self._outbox_row(batch, signal, contact, at, now)])
        batch.indices.append(index)

    def _outbox_row(self, batch: _CompanyBatch, signal: SignalData, contact: str | None, at: int, now: int) -> str:
        if not batch.company_id:
            return ""
        return orjson.dumps(signal_row(signal.signalId, signal.companyId, signal.signalType, contact, at,
                                       signal.data, now)).decode()

    def _expiry(self, day_ends: int) -> int:
        """A day's buckets live until the retention has passed after the day's end."""
        return day_ends + int(self.settings.signal_counts_retention * 1000)

    async def _record(self, batches: list[_CompanyBatch]) -> list[Any]:
        """One pipeline of script calls, one per company. Scripts missing from Redis
        (restart, failover, SCRIPT FLUSH) are loaded and those calls re-run: NOSCRIPT
        means the call did nothing."""
        if self._sha is None:
            await self.load()
        replies: list[Any] = [None] * len(batches)
        todo = list(range(len(batches)))
        for _ in range(2):
            async with self.redis.pipeline(transaction=False) as pipe:
                for i in todo:
                    b = batches[i]
                    pipe.evalsha(self._sha, len(b.keys), *b.keys, *b.args(self._limits))
                waits = self._wait.append(pipe, [batches[i].keys[0] for i in todo])
                answers = self._wait.check(await pipe.execute(raise_on_error=False), waits)
            missing = []
            for i, answer in zip(todo, answers):
                if isinstance(answer, NoScriptError):
                    missing.append(i)
                elif isinstance(answer, Exception):
                    raise answer
                else:
                    replies[i] = answer
            if not missing:
                return replies
            await self.load()
            todo = missing
        raise RuntimeError("record_signals.lua could not be loaded into Redis")

    # -- triggers -------------------------------------------------------------------------

    async def _enqueue_triggers(self, pending: list[tuple[SignalResult, SignalData, str]]) -> None:
        """Enqueues the jobs the script claimed. Idempotency keys name the signal and rule,
        so a rerun after a crash (the signal is then a duplicate) adds nothing twice."""
        companies = sorted({signal.companyId for _, signal, queue in pending if queue == "research"})
        profiles = dict(zip(companies, await self.store.profiles(companies))) if companies else {}
        by_queue: dict[str, list[tuple[SignalResult, Trigger]]] = {}
        for result, signal, queue in pending:
            trigger = (research_trigger(signal, profiles.get(signal.companyId, {})) if queue == "research"
                       else enrichment_trigger(signal))
            by_queue.setdefault(trigger.queue, []).append((result, trigger))
        for queue, items in by_queue.items():
            specs = [JobSpec(t.data, name=t.name, idempotency_key=t.idempotency_key) for _, t in items]
            added = await self.producer.add_many(queue, specs)
            for (result, trigger), job in zip(items, added):
                result.triggers.append(replace(trigger, job_id=job.id))
                if job.created:
                    log.info("signal %s (%s) triggered %s job %s", result.signal_id, trigger.rule, queue, job.id)


def _event_time(data: dict[str, Any], now: int) -> int:
    """The signal's own time (data.timestamp) when it has a usable one, else now."""
    at = parse_instant(data.get("timestamp"))
    if at is None or at > now + FUTURE_SKEW_MS:
        return now
    return min(at, now)
