"""The sink's loop: read a batch from the outbox, upsert it into PostgreSQL, settle it in
Redis; sweep now and then. PostgreSQL away: the batch is held and tried again every
`sink_retry_interval`, and the outbox waits (jobs go on completing). Runs beside the
workers (`tgjobs workers`/`up` with a DATABASE_URL) or alone (`tgjobs sink`).
"""

from __future__ import annotations

import asyncio
import logging
import signal
import time

from redis.asyncio import Redis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from config import Settings
from processors.outbox_drain import OutboxBatch, OutboxDrain, Rejected
from sink.writer import DatabaseUnavailable, PgWriter
from streams import connect

log = logging.getLogger(__name__)


class Sink:
    def __init__(self, settings: Settings, redis: Redis, consumer: str | None = None) -> None:
        self.settings = settings
        self.drain = OutboxDrain(redis, settings, consumer)
        self.writer = PgWriter(settings)
        self._down_since: float | None = None

    async def run(self, stopping: asyncio.Event, *, burst: bool = False) -> None:
        """Until `stopping` is set; with `burst`, until the outbox is empty (and
        DatabaseUnavailable if PostgreSQL cannot take a batch)."""
        log.info("sink %s writing records to PostgreSQL at %s (schema %s)", self.drain.consumer,
                 self.settings.redacted_database_url(), self.settings.database_schema)
        next_sweep = 0.0
        try:
            while not stopping.is_set():
                try:
                    if time.monotonic() >= next_sweep:
                        await self.drain.sweep()
                        next_sweep = time.monotonic() + self.settings.sink_sweep_interval
                    if not await self._round(stopping, burst):
                        if burst:
                            return
                        await _wait(stopping, self.settings.sink_poll_interval)
                except (RedisConnectionError, RedisTimeoutError, OSError) as exc:
                    if burst:
                        raise
                    log.warning("sink: Redis unavailable (%s); trying again in %.0fs", exc,
                                self.settings.sink_retry_interval)
                    await _wait(stopping, self.settings.sink_retry_interval)
        finally:
            await self.writer.close()
            log.info("sink %s stopped", self.drain.consumer)

    async def _round(self, stopping: asyncio.Event, burst: bool) -> bool:
        """One batch read, written and settled; False when there was nothing to do."""
        batch = await self.drain.read()
        if not batch.entries:
            forgotten = await self.drain.forget(batch.drained)
            return bool(forgotten or batch.recovered)
        outcome = await self._write(batch, stopping, burst)
        if outcome is not None:
            await self.drain.settle(batch, *outcome)
        return True

    async def _write(self, batch: OutboxBatch, stopping: asyncio.Event, burst: bool
                     ) -> tuple[dict[str, int], list[Rejected]] | None:
        """The batch written (rows per table, rejected rows), retried while PostgreSQL is
        away; None when stopped meanwhile (the entries stay pending: nothing is lost)."""
        tables = batch.rows()
        while True:
            try:
                written, rejected = await self.writer.write(tables)
            except DatabaseUnavailable as exc:
                if burst:
                    raise
                if self._down_since is None:
                    self._down_since = time.monotonic()
                    log.warning("sink: PostgreSQL unavailable (%s); the outbox waits, trying again every %.0fs",
                                exc, self.settings.sink_retry_interval)
                if await _wait(stopping, self.settings.sink_retry_interval):
                    return None
                continue
            if self._down_since is not None:
                log.info("sink: PostgreSQL is back after %.0fs", time.monotonic() - self._down_since)
                self._down_since = None
            if rejected:
                log.warning("sink: PostgreSQL rejected %d row(s), kept as sink dead letters; first: %s %s: %s",
                            len(rejected), rejected[0].table, rejected[0].row.get("id"), rejected[0].reason)
            return written, rejected


async def _wait(stopping: asyncio.Event, seconds: float) -> bool:
    """True when `stopping` was set within `seconds`."""
    try:
        await asyncio.wait_for(stopping.wait(), seconds)
        return True
    except TimeoutError:
        return False


async def serve_sink(settings: Settings, *, burst: bool = False) -> None:
    """`tgjobs sink`: the sink alone, until SIGTERM or SIGINT (or drained, with `burst`)."""
    redis = connect(settings, max_connections=4)
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stopping.set)
    try:
        await Sink(settings, redis).run(stopping, burst=burst)
    finally:
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(signum)
        await redis.aclose()
