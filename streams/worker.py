"""One queue's consumer: reads entries, runs the handler under the queue's limits and
records each outcome. Every queue runs this same loop; only its policy row differs.

run() loops: maintenance when due (reclaim walk, trim, reap) -> read up to the free
slots -> start a task per delivery -> wait for a free slot, new entries or the next
timer. Successes go through the Completer (batched); failures to fail.lua. A slot frees
when the handler returns: the next read goes out while the outcome is being written,
and the job stays in flight (leased, waited for at shutdown) until it is written.
"""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
import socket
import time
import traceback
from dataclasses import dataclass, field
from typing import Any

import orjson
from redis.asyncio import Redis
from redis.exceptions import ResponseError

from config import Settings
from streams import metrics
from streams.completer import Completer
from streams.connection import connect
from streams.context import Handler, JobContext
from streams.errors import JobTimeout, UnrecoverableError
from streams.fastpath import BatchRunner
from streams.keeping import keeps_records
from streams.keys import GROUP
from streams.outage import Outage, is_missing_group, is_transient
from streams.scripts import Delivery, QueueScripts, ReadResult, Scripts

log = logging.getLogger(__name__)

MIN_MAINTENANCE_S = 0.1
MAX_MAINTENANCE_S = 5.0
TRIM_EVERY_S = 5.0
REAP_EVERY_S = 60.0
PAUSED_POLL_S = 0.5
FAST_BLOCK_MAX_S = 1.0  # a fast-path read blocks no longer, so a stop is never held up
CANCEL_GRACE_S = 5.0


def consumer_name() -> str:
    """Unique per process and host, and readable in XINFO CONSUMERS."""
    return f"{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(3)}"


@dataclass(slots=True)
class Running:
    delivery: Delivery
    read_at: float
    task: asyncio.Task[None] = field(init=False)


class QueueWorker:
    """The consumer of one queue, or of one partition of a partitioned queue (the runner
    starts one per partition, each with its own loop and connections)."""

    def __init__(self, settings: Settings, queue: str, handler: Handler, *,
                 consumer: str | None = None, concurrency: int | None = None,
                 redis: Redis | None = None, partition: int = 0) -> None:
        self.settings = settings
        self.queue = queue
        self.policy = settings.policy(queue)
        self.handler = handler
        self.consumer = consumer or consumer_name()
        self.concurrency = concurrency or self.policy.concurrency
        self._own_redis = redis is None
        self.redis = redis or connect(settings, max_connections=self.concurrency + 6)
        self.scripts = QueueScripts(Scripts(self.redis), settings, queue, partition)
        self._completer = Completer(self.scripts, self.consumer)
        self._batches: BatchRunner | None = None
        if not keeps_records(self.policy):
            self._batches = BatchRunner(settings, self.scripts, self.redis, handler, self.consumer)
        elif getattr(handler, "handles_batches", False):
            raise ValueError(f"{queue}: a batch handler needs a queue without job records (records = false)")
        self._paused = False
        self._paused_checked_at = 0.0
        self._running: dict[str, Running] = {}  # handlers running: these hold the slots
        self._settling: dict[str, Running] = {}  # handlers done, outcomes being written
        self._slot_freed = asyncio.Event()
        self._stopping = asyncio.Event()
        where = f"{queue} partition {partition}" if partition else queue
        self._outage = Outage(log, f"{where} worker")
        self._failures_outage = Outage(log, f"{where} failures")
        self._next_maintenance = 0.0
        self._next_trim = 0.0
        self._next_reap = 0.0
        self._maintenance_every = min(max(min(self.policy.lock_timeout, self.policy.backoff_for(1)) / 4,
                                          MIN_MAINTENANCE_S), MAX_MAINTENANCE_S)
        metrics.track(self)

    @property
    def in_flight(self) -> int:
        return len(self._in_flight())

    def stop(self) -> None:
        """Stops reading; running jobs are given the shutdown grace period to finish."""
        self._stopping.set()

    async def run(self, *, burst: bool = False) -> None:
        """Consumes until stop(); with burst=True, returns once the queue has no
        waiting, active or delayed jobs left (for scripts and tests)."""
        helpers = [asyncio.create_task(self._completer.run()),
                   asyncio.create_task(self._extend_leases())]
        try:
            await self._until_ready()
            while not self._stopping.is_set():
                try:
                    if await self._step(burst):
                        break
                except Exception as exc:
                    await self._recover(exc)
            await self._drain()
        finally:
            for task in helpers:
                task.cancel()
            await asyncio.gather(*helpers, return_exceptions=True)
            if self._own_redis:
                await self.redis.aclose()

    # -- the loop -------------------------------------------------------------

    async def _step(self, burst: bool) -> bool:
        """One turn of the loop; True when a burst run is done."""
        if time.monotonic() >= self._next_maintenance:
            await self._maintain()
        if self._batches is not None:
            return await self._fast_step(self._batches, burst)
        free = self.concurrency - len(self._running)
        if free <= 0:
            await self._wait_for_slot(self._until_maintenance())
            return False
        result = await self.scripts.read(self.consumer, free)
        self._outage.succeeded()
        if result.kind == "jobs":
            self._start_all(result.jobs)
            return False
        if burst and not self._running and not self._settling and (
                result.kind == "paused" or not await self._has_work()):
            return True
        await self._idle(result)
        return False

    async def _fast_step(self, batches: BatchRunner, burst: bool) -> bool:
        if time.monotonic() - self._paused_checked_at >= PAUSED_POLL_S:
            self._paused = await self.redis.hget(self.scripts.keys.meta, "paused") == "1"
            self._paused_checked_at = time.monotonic()
        if self._paused:
            if burst:
                return True
            await self._sleep(min(self._until_maintenance(), PAUSED_POLL_S))
            return False
        block = 0.0 if burst else min(self._until_maintenance(), self.settings.read_block, FAST_BLOCK_MAX_S)
        deliveries = await batches.read(block)
        self._outage.succeeded()
        if deliveries:
            await batches.run(deliveries)
            return False
        return burst and not await self._has_work()

    async def _idle(self, result: ReadResult) -> None:
        wait = self._until_maintenance()
        if result.kind == "paused":
            await self._sleep(min(wait, PAUSED_POLL_S))
        elif result.kind == "limited":
            metrics.rate_limited(self.queue, min(wait, result.wait_ms / 1000))
            await self._sleep(min(wait, result.wait_ms / 1000))
        else:
            if result.wait_ms >= 0:
                wait = min(wait, result.wait_ms / 1000)
            await self._wait_for_entries(result.last_ids, min(wait, self.settings.read_block))

    async def _maintain(self) -> None:
        """Reclaims due retries and stalled entries; now and then trims the lanes and
        removes consumers that left."""
        lane, cursor = 1, "-"
        while lane:
            free = max(self._free_slots(), 0)
            page = await self.scripts.reclaim(self.consumer, free, lane, cursor)
            if self._batches is not None and page.jobs:
                await self._batches.run(page.jobs)
            else:
                self._start_all(page.jobs)
            lane, cursor = page.lane, page.cursor
        now = time.monotonic()
        if now >= self._next_trim:
            for lane in (1, 2, 3):
                await self.scripts.trim(lane)
            self._next_trim = now + TRIM_EVERY_S
        if now >= self._next_reap:
            for lane in (1, 2, 3):
                removed = await self.scripts.reap(lane, self.settings.dead_consumer_after)
                if removed:
                    log.info("%s: removed idle consumers without pending entries: %s",
                             self.queue, ", ".join(removed))
            self._next_reap = now + REAP_EVERY_S
        self._next_maintenance = now + self._maintenance_every

    async def _recover(self, exc: Exception) -> None:
        if is_missing_group(exc):
            log.warning("%s: consumer group missing (stream flushed or Redis restarted empty); "
                        "recreating it", self.queue)
            await self._ensure_groups()
        elif is_transient(exc):
            await self._sleep(self._outage.failed(exc))
        else:
            log.exception("%s: unexpected error in the worker loop; retrying", self.queue)
            await self._sleep(self._outage.failed(exc))

    async def _until_ready(self) -> None:
        """Waits for Redis, loads the scripts and creates the consumer groups."""
        while not self._stopping.is_set():
            try:
                await self.scripts.scripts.load()
                await self._ensure_groups()
                self._outage.succeeded()
                return
            except Exception as exc:
                if not is_transient(exc):
                    raise
                await self._sleep(self._outage.failed(exc))

    async def _ensure_groups(self) -> None:
        for lane in self.scripts.keys.lanes:
            try:
                # From the start of the stream, never "$": a backlog is work to do.
                await self.redis.xgroup_create(lane, GROUP, id="0", mkstream=True)
            except ResponseError as exc:
                if "BUSYGROUP" not in str(exc):
                    raise

    def _free_slots(self) -> int:
        if self._batches is not None:
            return self.policy.batch_size
        return self.concurrency - len(self._running)

    async def _has_work(self) -> bool:
        k = self.scripts.keys
        if self._batches is not None:  # entries pending, or not read yet (a rate limit holds them)
            async with self.redis.pipeline(transaction=False) as pipe:
                for lane in k.lanes:
                    pipe.xinfo_groups(lane)
                groups = [g for reply in await pipe.execute() for g in reply if g["name"] == GROUP]
            return any(g["pending"] or g.get("lag") for g in groups)
        async with self.redis.pipeline(transaction=False) as pipe:
            for state in ("waiting", "active", "retrying"):
                pipe.zcard(k.state_index(state))
            pipe.zcard(k.scheduled)
            return any(await pipe.execute())

    # -- waiting ----------------------------------------------------------------

    def _until_maintenance(self) -> float:
        return max(self._next_maintenance - time.monotonic(), 0.001)

    async def _sleep(self, seconds: float) -> None:
        try:
            await asyncio.wait_for(self._stopping.wait(), seconds)
        except TimeoutError:
            pass

    async def _wait_for_slot(self, timeout: float) -> None:
        self._slot_freed.clear()
        try:
            await asyncio.wait_for(self._slot_freed.wait(), timeout)
        except TimeoutError:
            pass

    async def _wait_for_entries(self, last_ids: tuple[str, ...], timeout: float) -> None:
        """Blocks until a lane gets an entry newer than `last_ids`, the timeout passes or
        the worker stops. XREAD (not XREADGROUP) delivers nothing: the next read, with its
        rate limit and pause checks, takes the entry."""
        streams = dict(zip(self.scripts.keys.lanes, last_ids))
        block = asyncio.ensure_future(self.redis.xread(streams, count=1, block=max(int(timeout * 1000), 1)))
        stop = asyncio.ensure_future(self._stopping.wait())
        done, pending = await asyncio.wait({block, stop}, return_when=asyncio.FIRST_COMPLETED)
        for task in pending:
            task.cancel()
        if block in done:
            block.result()  # surface connection errors to the loop

    # -- running jobs -----------------------------------------------------------

    def _start_all(self, deliveries: list[Delivery]) -> None:
        metrics.jobs_started(self.queue, deliveries)
        read_at = time.monotonic()
        for delivery in deliveries:
            running = Running(delivery, read_at)
            running.task = asyncio.create_task(self._execute(running))
            self._running[delivery.entry_key] = running

    def _settle(self, running: Running) -> None:
        """The handler returned: its slot frees while the outcome is written."""
        key = running.delivery.entry_key
        self._settling[key] = self._running.pop(key, running)
        self._slot_freed.set()

    async def _execute(self, running: Running) -> None:
        d = running.delivery
        try:
            if time.monotonic() - running.read_at > self.policy.lock_timeout / 2:
                # The loop was held up since the read: make sure the entry is still ours.
                if not (await self.scripts.extend(self.consumer, [d]))[0]:
                    log.warning("%s: job %s was taken over before it started", self.queue, d.job_id)
                    return
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
                await self._record_failure(d, error, ran)
            elif await self._completer.complete(d, value):
                metrics.job_outcome(self.queue, "completed")
                log.info("%s: job %s completed in %.0f ms", self.queue, d.job_id, ran * 1000,
                         extra={"queue": self.queue, "job": d.job_id, "attempt": d.attempts_made + 1,
                                "duration_ms": round(ran * 1000, 1)})
            else:
                metrics.job_outcome(self.queue, "discarded")
                log.warning("%s: job %s finished after another worker took it over; "
                            "its result was discarded", self.queue, d.job_id)
        finally:
            self._running.pop(d.entry_key, None)
            self._settling.pop(d.entry_key, None)
            self._slot_freed.set()

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

    async def _record_failure(self, d: Delivery, exc: Exception, ran: float | None = None) -> None:
        unrecoverable = isinstance(exc, UnrecoverableError)
        stack = "".join(traceback.format_exception(exc))
        backoff = self.policy.backoff_for(d.attempts_made + 1)
        outcome = await self._failures_outage.retry(
            lambda: self.scripts.fail(self.consumer, d, exc, stack, backoff, unrecoverable))
        metrics.job_outcome(self.queue, outcome if outcome in ("retry", "dead") else "discarded")
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

    async def _extend_leases(self) -> None:
        """Re-claims running entries every third of the lease so a live worker keeps them."""
        every = self.policy.lock_timeout / 3
        while True:
            await asyncio.sleep(every)
            deliveries = self._in_flight()
            if not deliveries:
                continue
            try:
                kept = await self.scripts.extend(self.consumer, deliveries)
            except Exception as exc:
                if not is_transient(exc) and not is_missing_group(exc):
                    raise
                continue
            still_running = {d.entry_key for d in self._in_flight()}
            for d, ok in zip(deliveries, kept):
                # A job that finished while the call was out is simply no longer pending.
                if not ok and d.entry_key in still_running:
                    log.warning("%s: lost the lease of job %s (another worker took it over)",
                                self.queue, d.job_id)

    def _in_flight(self) -> list[Delivery]:
        running = [r.delivery for r in (*self._running.values(), *self._settling.values())]
        return running + self._batches.in_flight if self._batches is not None else running

    async def _drain(self) -> None:
        """Shutdown: give running jobs the grace period, then cancel what is left.
        Cancelled jobs are not acked; they stay pending and are reclaimed elsewhere."""
        tasks = [r.task for r in (*self._running.values(), *self._settling.values())]
        if not tasks:
            return
        log.info("%s: waiting up to %.0fs for %d running job(s)", self.queue,
                 self.settings.shutdown_grace, len(tasks))
        _, late = await asyncio.wait(tasks, timeout=self.settings.shutdown_grace)
        if late:
            log.warning("%s: %d job(s) did not finish within the grace period; they stay "
                        "pending and will be reclaimed", self.queue, len(late))
            for task in late:
                task.cancel()
            await asyncio.wait(late, timeout=CANCEL_GRACE_S)
