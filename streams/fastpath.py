"""The fast path: how a queue without job records runs a batch of entries.

Same guarantees as the regular path (at-least-once, retries by reclaim, dead letters),
less work per entry: one XREADGROUP over every lane for a large batch, the handler
run inline (or once for the whole batch), and the batch acked in one pipeline.
Entries carry their data (the wire format in the README); one that is not UTF-8 or not
valid JSON, has no data, or is oversized is dead-lettered with the reason, and the rest
go on. Entries are read as bytes and decoded here, one at a time, so one undecodable
entry cannot fail the read of its batch.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence
from typing import Any

import orjson
from redis.asyncio import Redis
from redis.client import NEVER_DECODE

from config import Settings
from streams import metrics, tracing
from streams.context import Handler, JobContext
from streams.eager import EagerBatch
from streams.errors import InvalidJob, JobTimeout, UnrecoverableError
from streams.keys import GROUP
from streams.outage import Outage
from streams.delivery import Delivery
from streams.scripts import QueueScripts
from streams.tracing import TRACEPARENT, NoSpan, failure_span_events

log = logging.getLogger(__name__)
FAST_WAIT_MAX_S = 1.0  # a rate-limited read waits no longer, so a stop is never held up
_TRACEPARENT_FIELD = TRACEPARENT.encode()  # entries are read as bytes


def entry_text(data: bytes | None) -> tuple[str | None, str]:
    """An entry's data as text, and '' or why it cannot run: data that is not UTF-8 comes
    back with every byte above 127 written as \\xNN (as the Lua side escapes it), for
    the dead letter."""
    if data is None:
        return None, ""
    try:
        return data.decode(), ""
    except UnicodeDecodeError as exc:
        reason = f"entry data is not valid UTF-8 (byte 0x{data[exc.start]:02x} at offset {exc.start})"
        return data.decode("ascii", "backslashreplace"), reason


def entry_traceparent(value: bytes | None) -> str | None:
    """An entry's traceparent field when it is ASCII (a raw XADD may put anything there)."""
    try:
        return value.decode("ascii") if value else None
    except UnicodeDecodeError:
        return None


class BatchRunner:
    """Reads, runs and settles one batch at a time for one fast-path queue."""

    def __init__(self, settings: Settings, scripts: QueueScripts, redis: Redis, handler: Handler,
                 consumer: str) -> None:
        self.settings = settings
        self.scripts = scripts
        self.queue = scripts.queue
        self.keys = scripts.keys
        self.policy = settings.policy(self.queue)
        self.redis = redis
        self.handler = handler
        self.consumer = consumer
        self.in_flight: list[Delivery] = []
        self._batch_handler = bool(getattr(handler, "handles_batches", False))
        self._outage = Outage(log, f"{self.queue} failures")
        self._lane_index = {lane_key.encode(): index for index, lane_key in enumerate(self.keys.lanes, 1)}
        self._decides = self.policy.rate_limit is not None or self.policy.lane_weights is not None
        self._job_prefix = self.keys.entry_job_prefix

    async def read(self, block_s: float) -> list[Delivery]:
        """One read over every lane; blocks up to `block_s` when all are empty (0: answers
        at once; a short BLOCK would not, Redis times blocked reads out on its own clock,
        tens of milliseconds late). A queue with a rate limit or lane weights reads
        through read_entries.lua, which decides; one with neither, with XREADGROUP."""
        if self._decides:
            return await self._read_decided(block_s)
        block = ["BLOCK", max(int(block_s * 1000), 1)] if block_s > 0 else []
        reply = await self.redis.execute_command(
            "XREADGROUP", "GROUP", GROUP, self.consumer, "COUNT", self.policy.batch_size, *block,
            "STREAMS", *self.keys.lanes, ">", ">", ">", **{NEVER_DECODE: []})
        prefix = self._job_prefix
        deliveries = []
        for lane_key, entries in reply or []:
            lane = self._lane_index[lane_key]
            for raw_id, fields in entries:
                entry_id = raw_id.decode()
                data, invalid = entry_text(fields.get(b"data"))
                deliveries.append(Delivery(lane, entry_id, prefix + entry_id, data, 0, 0, 1,
                                           entry_traceparent(fields.get(_TRACEPARENT_FIELD)), invalid))
        if len(reply or ()) > 1:
            deliveries.sort(key=lambda d: d.lane)  # strict priority within the batch
        return deliveries

    async def _read_decided(self, block_s: float) -> list[Delivery]:
        result = await self.scripts.read_entries(self.consumer, self.policy.batch_size)
        if result.kind == "limited":
            wait = min(result.wait_ms / 1000, FAST_WAIT_MAX_S)
            metrics.rate_limited(self.queue, wait)
            await asyncio.sleep(wait)  # burst runs too: the entries still wait for permits
        elif result.kind == "empty" and block_s > 0:
            await self.redis.xread(dict(zip(self.keys.lanes, result.last_ids)), count=1,
                                   block=max(int(block_s * 1000), 1))
        return result.jobs

    async def run(self, deliveries: list[Delivery]) -> None:
        """Runs a batch and records every outcome: acks for successes (one pipeline),
        failures and invalid entries through fail_entry."""
        self.in_flight = deliveries
        metrics.jobs_started(self.queue, deliveries)
        try:
            with tracing.batch_run(self.queue, deliveries) as span:
                await self._run(deliveries, span)
        finally:
            self.in_flight = []

    async def _run(self, deliveries: list[Delivery], span: NoSpan) -> None:
        jobs, data, rejected = self._parse(deliveries)
        started = time.monotonic()
        outcomes = await self._call(jobs) if jobs else []
        log.debug("%s: batch of %d ran in %.0f ms", self.queue, len(deliveries),
                  (time.monotonic() - started) * 1000,
                  extra={"queue": self.queue, "count": len(deliveries),
                         "duration_ms": round((time.monotonic() - started) * 1000, 1)})
        done = [(d, outcome) for d, outcome in zip(data, outcomes) if not isinstance(outcome, BaseException)]
        span.set("tgjobs.batch.completed", len(done))
        if done:
            await self._ack(done, time.monotonic() - started)
        for d, outcome in zip(data, outcomes):
            if isinstance(outcome, BaseException):
                await self._fail(d, outcome, span)
        for d, error in rejected:
            await self._fail(d, error, span)

    def _parse(self, deliveries: list[Delivery]) -> tuple[list[JobContext], list[Delivery],
                                                          list[tuple[Delivery, Exception]]]:
        limit = self.settings.max_entry_bytes
        queue, redis, keys, events_max_len = self.queue, self.redis, self.keys, self.settings.events_max_len
        jobs, kept, rejected = [], [], []
        for d in deliveries:
            if d.invalid:
                rejected.append((d, InvalidJob(d.invalid)))
                continue
            if d.raw is None:
                rejected.append((d, InvalidJob("entry has no 'data' field")))
                continue
            if len(d.raw) > limit:
                rejected.append((d, InvalidJob(f"entry data is {len(d.raw)} bytes, over the limit of {limit}")))
                continue
            try:
                value = orjson.loads(d.raw)
            except orjson.JSONDecodeError as exc:
                rejected.append((d, InvalidJob(f"entry data is not valid JSON: {exc}")))
                continue
            jobs.append(JobContext(d.job_id, queue, value, d.attempts_made + 1, d.stalls, redis, keys,
                                   events_max_len, tracked=False))
            kept.append(d)
        return jobs, kept, rejected

    async def _call(self, jobs: list[JobContext]) -> Sequence[Any]:
        timeout = self.policy.timeout
        if self._batch_handler:
            started = time.monotonic()
            try:
                async with asyncio.timeout(timeout):
                    results = await self.handler(jobs)  # type: ignore[arg-type]
            except Exception as exc:
                metrics.job_ran(self.queue, time.monotonic() - started, len(jobs))
                error = JobTimeout(f"batch exceeded the queue's timeout of {timeout:g}s") \
                    if isinstance(exc, TimeoutError) else exc
                return [error] * len(jobs)
            metrics.job_ran(self.queue, time.monotonic() - started, len(jobs))
            if len(results) != len(jobs):
                error = RuntimeError(f"batch handler returned {len(results)} results for {len(jobs)} jobs")
                return [error] * len(jobs)
            return results
        return await self._run_each(jobs)

    async def _run_each(self, jobs: list[JobContext]) -> list[Any]:
        """Runs the handler on each job, eagerly (streams.eager): at most `concurrency`
        calls waiting at once, each under the queue's timeout."""
        outcomes, durations = await EagerBatch(self.handler, self.policy.concurrency, self.policy.timeout).run(jobs)
        metrics.jobs_ran(self.queue, durations)  # once for the batch: a histogram call per entry cost a third
        return outcomes

    async def _ack(self, done: list[tuple[Delivery, Any]], ran: float) -> None:
        """Acks a batch in one round trip, keeping the newest `keep_completed` outcomes
        (older ones of the batch would be trimmed at once). Not fenced, unlike the
        regular path: a run that succeeded wrote its effects (idempotent by design on
        this path), so its ack is true whichever worker sends it."""
        acked: list[list[str]] = [[], [], []]
        for d, _ in done:
            acked[d.lane - 1].append(d.entry_id)
        ran_ms = int(ran * 1000)
        kept = [(d.lane, d.job_id, d.raw or "null", orjson.dumps(value, default=str).decode(), d.attempts_made + 1,
                 d.stalls, ran_ms) for d, value in done[max(len(done) - self.policy.keep_completed, 0):]]
        cleared = [d.entry_key for d, _ in done if d.delivery > 1]
        await self._outage.retry(lambda: self.scripts.settle_entries(acked, cleared, kept))
        metrics.job_outcome(self.queue, "completed", len(done))

    async def _fail(self, d: Delivery, error: BaseException, span: NoSpan) -> None:
        unrecoverable = isinstance(error, (UnrecoverableError, InvalidJob))
        backoff = self.policy.backoff_for(d.attempts_made + 1)
        outcome = await self._outage.retry(
            lambda: self.scripts.fail_entry(self.consumer, d, d.raw or "null", error, backoff, unrecoverable))
        metrics.job_outcome(self.queue, outcome if outcome in ("retry", "dead") else "discarded")
        failure_span_events(span, outcome, error, backoff, d.job_id)
        if outcome == "dead":
            log.error("%s: entry %s dead-lettered: %s: %s", self.queue, d.entry_id, type(error).__name__, error)
        elif outcome == "retry":
            log.warning("%s: entry %s failed (attempt %d of %d), retrying in %.1fs: %s: %s", self.queue,
                        d.entry_id, d.attempts_made + 1, self.policy.attempts, backoff,
                        type(error).__name__, error)

