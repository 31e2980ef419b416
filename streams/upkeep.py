"""A worker's upkeep of its queue beside the loop: leases of the jobs it runs extended
every third of the lease (so the reclaim walk never takes a job from a live worker),
and now and then the lanes trimmed of what every group is done with and the consumers
that left without pending entries removed. QueueWorker owns one.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from config import Settings
from streams.outage import is_missing_group, is_transient
from streams.scripts import Delivery, QueueScripts

log = logging.getLogger("streams.worker")

TRIM_EVERY_S = 5.0
REAP_EVERY_S = 60.0


class Upkeep:
    def __init__(self, settings: Settings, scripts: QueueScripts, consumer: str) -> None:
        self.settings = settings
        self.scripts = scripts
        self.queue = scripts.queue
        self.consumer = consumer
        self._next_trim = 0.0
        self._next_reap = 0.0

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
