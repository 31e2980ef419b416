"""Recorded jobs' runs: each delivery becomes a task that runs the handler under the
queue's timeout and records the outcome (successes batched by the Completer, failures
through fail.lua). A slot frees when the handler returns; the job stays in flight
(leased, waited for at shutdown) until its outcome is written. QueueWorker owns one.
"""

from __future__ import annotations

import asyncio
import logging
import time
import traceback
from dataclasses import dataclass, field
from typing import Any

import orjson
from redis.asyncio import Redis

from config import Settings
from streams import metrics, tracing
from streams.completer import Completer
from streams.context import Handler, JobContext
from streams.errors import JobTimeout, UnrecoverableError
from streams.outage import Outage
from streams.delivery import Delivery
from streams.scripts import QueueScripts
from streams.tracing import OUTCOME, NoSpan, failure_span_events

log = logging.getLogger("streams.worker")


@dataclass(slots=True)
class Running:
    delivery: Delivery
    read_at: float
    task: asyncio.Task[None] = field(init=False)


class JobRunner:
    def __init__(self, settings: Settings, scripts: QueueScripts, redis: Redis, handler: Handler,
                 consumer: str, where: str) -> None:
        self.settings = settings
        self.scripts = scripts
        self.queue = scripts.queue
        self.policy = settings.policy(self.queue)
        self.redis = redis
        self.handler = handler
        self.consumer = consumer
        self.completer = Completer(scripts, consumer)
        self.running: dict[str, Running] = {}  # handlers running: these hold the slots
        self.settling: dict[str, Running] = {}  # handlers done, outcomes being written
        self.slot_freed = asyncio.Event()
        self._failures_outage = Outage(log, f"{where} failures")

    @property
    def busy(self) -> bool:
        return bool(self.running or self.settling)

    def in_flight(self) -> list[Delivery]:
        return [r.delivery for r in (*self.running.values(), *self.settling.values())]

    def tasks(self) -> list[asyncio.Task[None]]:
        return [r.task for r in (*self.running.values(), *self.settling.values())]

    def start_all(self, deliveries: list[Delivery]) -> None:
        metrics.jobs_started(self.queue, deliveries)
        read_at = time.monotonic()
        for delivery in deliveries:
            running = Running(delivery, read_at)
            running.task = asyncio.create_task(self._execute(running))
            self.running[delivery.entry_key] = running

    def _settle(self, running: Running) -> None:
        """The handler returned: its slot frees while the outcome is written."""
        key = running.delivery.entry_key
        self.settling[key] = self.running.pop(key, running)
        self.slot_freed.set()

    async def _execute(self, running: Running) -> None:
        d = running.delivery
        try:
            if time.monotonic() - running.read_at > self.policy.lock_timeout / 2:
                # The loop was held up since the read: make sure the entry is still ours.
                if not (await self.scripts.extend(self.consumer, [d]))[0]:
                    log.warning("%s: job %s was taken over before it started", self.queue, d.job_id)
                    return
            with tracing.job_run(self.queue, d) as span:
                await self._run(running, span)
        finally:
            self.running.pop(d.entry_key, None)
            self.settling.pop(d.entry_key, None)
            self.slot_freed.set()

    async def _run(self, running: Running, span: NoSpan) -> None:
        """Calls the handler and records the outcome, inside the run's span."""
        d = running.delivery
        log.debug("%s: job %s started (attempt %d)", self.queue, d.job_id, d.attempts_made + 1,
                  extra={"queue": self.queue, "job": d.job_id, "attempt": d.attempts_made + 1})
        started = time.monotonic()
        value = ""  # the encoded result, or
        error: Exception | None = None  # what the handler raised
        try:
            value = self._encode(await self._call_handler(d))
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            error = exc
        ran = time.monotonic() - started
        metrics.job_ran(self.queue, ran)
        self._settle(running)
        if error is not None:
            span.fail(error)
            await self._record_failure(d, error, span, ran)
        elif await self.completer.complete(d, value):
            span.set(OUTCOME, "completed")
            metrics.job_outcome(self.queue, "completed")
            log.info("%s: job %s completed in %.0f ms", self.queue, d.job_id, ran * 1000,
                     extra={"queue": self.queue, "job": d.job_id, "attempt": d.attempts_made + 1,
                            "duration_ms": round(ran * 1000, 1)})
        else:
            span.set(OUTCOME, "discarded")
            metrics.job_outcome(self.queue, "discarded")
            log.warning("%s: job %s finished after another worker took it over; "
                        "its result was discarded", self.queue, d.job_id)

    async def _call_handler(self, d: Delivery) -> Any:
        data = orjson.loads(d.raw) if d.raw else None
        ctx = JobContext(d.job_id, self.queue, data, d.attempts_made + 1, d.stalls,
                         self.redis, self.scripts.keys, self.settings.events_max_len)
        timeout = asyncio.timeout(self.policy.timeout)
        try:
            async with timeout:
                return await self.handler(ctx)
        except TimeoutError:
            if timeout.expired():
                raise JobTimeout(f"attempt exceeded the queue's timeout of {self.policy.timeout:g}s") from None
            raise

    @staticmethod
    def _encode(result: Any) -> str:
        try:
            return orjson.dumps(result).decode()
        except TypeError as exc:
            raise UnrecoverableError(f"the handler returned a value that is not JSON: {exc}") from None

    async def _record_failure(self, d: Delivery, exc: Exception, span: NoSpan, ran: float | None = None) -> None:
        unrecoverable = isinstance(exc, UnrecoverableError)
        stack = "".join(traceback.format_exception(exc))
        backoff = self.policy.backoff_for(d.attempts_made + 1)
        outcome = await self._failures_outage.retry(
            lambda: self.scripts.fail(self.consumer, d, exc, stack, backoff, unrecoverable))
        counted = outcome if outcome in ("retry", "dead") else "discarded"
        metrics.job_outcome(self.queue, counted)
        span.set(OUTCOME, counted)
        failure_span_events(span, outcome, exc, backoff)
        extra = {"queue": self.queue, "job": d.job_id, "attempt": d.attempts_made + 1, "outcome": outcome,
                 "error": f"{type(exc).__name__}: {exc}",
                 **({"duration_ms": round(ran * 1000, 1)} if ran is not None else {})}
        if outcome == "retry":
            log.warning("%s: job %s failed (attempt %d of %d), retrying in %.1fs: %s: %s", self.queue,
                        d.job_id, d.attempts_made + 1, self.policy.attempts, backoff,
                        type(exc).__name__, exc, extra=extra)
        elif outcome == "dead":
            log.error("%s: job %s failed for good and was dead-lettered: %s: %s", self.queue,
                      d.job_id, type(exc).__name__, exc, extra=extra)
        else:
            log.warning("%s: job %s failed after another worker took it over; outcome discarded",
                        self.queue, d.job_id)

