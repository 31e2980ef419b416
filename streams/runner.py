"""Runs the workers of several queues in one process until SIGTERM or SIGINT.

On a signal every worker stops reading, running jobs get the grace period, and the
process exits 0; whatever did not finish stays pending for another worker. While it
runs, the process keeps its entry in the worker registry fresh (streams.registry).
"""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Mapping

from config import Settings
from streams.connection import connect
from streams.context import Handler
from streams.registry import Heartbeat
from streams.worker import QueueWorker, consumer_name

log = logging.getLogger(__name__)


async def run_workers(settings: Settings, handlers: Mapping[str, Handler], *,
                      concurrency: int | None = None, burst: bool = False) -> None:
    """Runs one worker per queue in `handlers` (one per partition of a partitioned
    queue), sharing one consumer name."""
    consumer = consumer_name()
    workers = [QueueWorker(settings, queue, handler, consumer=consumer, concurrency=concurrency, partition=p)
               for queue, handler in handlers.items() for p in range(settings.policy(queue).partitions)]
    loop = asyncio.get_running_loop()

    def stop(signum: int) -> None:
        log.info("received %s: stopping (running jobs get up to %.0fs)",
                 signal.Signals(signum).name, settings.shutdown_grace)
        for worker in workers:
            worker.stop()

    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop, signum)
    log.info("worker %s consuming %s", consumer, ", ".join(_described(settings, queue, concurrency) for queue in handlers))
    registry_redis = connect(settings, max_connections=2)
    heartbeat = Heartbeat(registry_redis, settings, consumer, list(handlers), lambda: _in_flight(workers))
    beating = asyncio.create_task(heartbeat.run())
    try:
        await asyncio.gather(*(worker.run(burst=burst) for worker in workers))
    finally:
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(signum)
        heartbeat.stop()
        await asyncio.gather(beating, return_exceptions=True)
        await registry_redis.aclose()
    log.info("worker %s stopped", consumer)


def _described(settings: Settings, queue: str, concurrency: int | None) -> str:
    policy = settings.policy(queue)
    partitions = f", {policy.partitions} partitions" if policy.partitions > 1 else ""
    return f"{queue} (concurrency {concurrency or policy.concurrency}{partitions})"


def _in_flight(workers: list[QueueWorker]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for worker in workers:
        counts[worker.queue] = counts.get(worker.queue, 0) + worker.in_flight
    return counts
