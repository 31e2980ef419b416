"""One queue's consumer: reads entries, runs the handler under the queue's limits and
records each outcome. Every queue runs this same loop; only its policy row differs.

run() loops: maintenance when due (reclaim walk, trim, reap) -> read up to the free
slots -> run what was read -> wait for a free slot, new entries or the next timer.
Recorded jobs run as one task each (`job_runner`); stream-kept jobs a batch at a time
(`fastpath`). The worker keeps the leases of both and waits for them at shutdown.
"""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
import socket
import time

from redis.asyncio import Redis
from redis.exceptions import ResponseError

from config import Settings
from streams import metrics
from streams.connection import connect
from streams.context import Handler
from streams.fastpath import BatchRunner
from streams.job_runner import JobRunner
from streams.keeping import keeps_records
from streams.keys import GROUP
from streams.outage import Outage, is_missing_group, is_transient
from streams.delivery import Delivery, ReadResult
from streams.scripts import QueueScripts, Scripts
from streams.upkeep import Upkeep

log = logging.getLogger(__name__)

MIN_MAINTENANCE_S = 0.1
MAX_MAINTENANCE_S = 5.0
PAUSED_POLL_S = 0.5
FAST_BLOCK_MAX_S = 1.0  # a fast-path read blocks no longer, so a stop is never held up
CANCEL_GRACE_S = 5.0


def consumer_name() -> str:
    """Unique per process and host, and readable in XINFO CONSUMERS."""
    return f"{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(3)}"


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
        self._batches: BatchRunner | None = None
        if not keeps_records(self.policy):
            self._batches = BatchRunner(settings, self.scripts, self.redis, handler, self.consumer)
        elif getattr(handler, "handles_batches", False):
            raise ValueError(f"{queue}: a batch handler needs a queue without job records (records = false)")
        self._paused = False
        self._paused_checked_at = 0.0
        self._stopping = asyncio.Event()
        where = f"{queue} partition {partition}" if partition else queue
        self._outage = Outage(log, f"{where} worker")
        self._jobs = JobRunner(settings, self.scripts, self.redis, handler, self.consumer, where)
        self._next_maintenance = 0.0
        self._upkeep = Upkeep(settings, self.scripts, self.consumer)
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
        helpers = [asyncio.create_task(self._jobs.completer.run()),
                   asyncio.create_task(self._upkeep.extend_leases(self._in_flight))]
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
        free = self.concurrency - len(self._jobs.running)
        if free <= 0:
            await self._wait_for_slot(self._until_maintenance())
            return False
        result = await self.scripts.read(self.consumer, free)
        self._outage.succeeded()
        if result.kind == "jobs":
            self._jobs.start_all(result.jobs)
            return False
        if burst and not self._jobs.busy and (
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
        """Reclaims due retries and stalled entries; now and then tidies up (Upkeep)."""
        lane, cursor = 1, "-"
        while lane:
            free = max(self._free_slots(), 0)
            page = await self.scripts.reclaim(self.consumer, free, lane, cursor)
            if self._batches is not None and page.jobs:
                await self._batches.run(page.jobs)
            else:
                self._jobs.start_all(page.jobs)
            lane, cursor = page.lane, page.cursor
        now = time.monotonic()
        await self._upkeep.tidy(now)
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
        return self.concurrency - len(self._jobs.running)

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
        self._jobs.slot_freed.clear()
        try:
            await asyncio.wait_for(self._jobs.slot_freed.wait(), timeout)
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

    # -- in flight and shutdown ----------------------------------------------------

    def _in_flight(self) -> list[Delivery]:
        running = self._jobs.in_flight()
        return running + self._batches.in_flight if self._batches is not None else running

    async def _drain(self) -> None:
        """Shutdown: give running jobs the grace period, then cancel what is left.
        Cancelled jobs are not acked; they stay pending and are reclaimed elsewhere."""
        tasks = self._jobs.tasks()
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
