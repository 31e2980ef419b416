"""A worker's upkeep of its queue beside the loop: leases of the jobs it runs extended
every third of the lease (so the reclaim walk never takes a job from a live worker),
and now and then the lanes trimmed of what every group is done with, the consumers
that left without pending entries removed, and (queues with job records) waiting jobs
that no worker would ever read queued again (requeue_lost.lua). QueueWorker owns one.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from config import Settings
from streams import metrics
from streams.keeping import keeps_records
from streams.outage import is_missing_group, is_transient
from streams.delivery import Delivery
from streams.scripts import QueueScripts

log = logging.getLogger("streams.worker")

TRIM_EVERY_S = 5.0
REAP_EVERY_S = 60.0
REQUEUE_EVERY_S = 30.0


class Upkeep:
    def __init__(self, settings: Settings, scripts: QueueScripts, consumer: str) -> None:
        self.settings = settings
        self.scripts = scripts
        self.queue = scripts.queue
        self.consumer = consumer
        self._next_trim = 0.0
        self._next_reap = 0.0
        self._next_requeue = 0.0 if keeps_records(scripts.policy) else float("inf")
        self._walk: str | None = None  # the cursor of the lost-job walk under way

    async def tidy(self, now: float) -> None:
        """Trims the lanes and removes consumers that left, each when due."""
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
        # The lost-job walk goes one page per turn, so its cost does not grow with the
        # backlog: every job it checks costs Redis a few lookups (a 20,000-job backlog
        # walked at once doubled the Redis CPU of draining it).
        if self._walk is None and now >= self._next_requeue:
            self._walk = "0"
        if self._walk is not None:
            cursor = await self._requeue_page(self._walk)
            self._walk = None if cursor == "0" else cursor
            if self._walk is None:
                self._next_requeue = now + REQUEUE_EVERY_S

    async def _requeue_page(self, cursor: str) -> str:
        """One page of the walk over the waiting jobs: those whose entry no worker would
        read are queued again, those whose record is gone dead-lettered; both logged, the
        first counted. Returns the next cursor ("0": the walk is done)."""
        cursor, requeued, buried = await self.scripts.requeue_lost(cursor)
        if requeued:
            metrics.jobs_requeued(self.queue, len(requeued))
            log.warning("%s: %d waiting job(s) had no stream entry a worker would read (evicted?); queued "
                        "again: %s", self.queue, len(requeued), ", ".join(requeued))
        if buried:
            log.error("%s: %d waiting job(s) had lost their record (evicted?); dead-lettered as "
                      "RecordMissing: %s", self.queue, len(buried), ", ".join(buried))
        return cursor

    async def extend_leases(self, in_flight: Callable[[], list[Delivery]]) -> None:
        """Re-claims the running entries every third of the lease, until cancelled."""
        every = self.scripts.policy.lock_timeout / 3
        lost: set[tuple[str, int]] = set()  # (entry, delivery) runs told once that they lost the lease
        while True:
            await asyncio.sleep(every)
            running = in_flight()
            lost &= {(d.entry_key, d.delivery) for d in running}
            deliveries = [d for d in running if (d.entry_key, d.delivery) not in lost]
            if not deliveries:
                continue
            try:
                kept = await self.scripts.extend(self.consumer, deliveries)
            except Exception as exc:
                if not is_transient(exc) and not is_missing_group(exc):
                    raise
                continue
            still_running = {d.entry_key for d in in_flight()}
            for d, ok in zip(deliveries, kept):
                # A job that finished while the call was out is simply no longer pending.
                if not ok and d.entry_key in still_running:
                    lost.add((d.entry_key, d.delivery))  # not extended again: the lease is another's now
                    log.warning("%s: lost the lease of job %s (another worker took it over)",
                                self.queue, d.job_id)
