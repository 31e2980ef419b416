"""The PostgreSQL sink beside the signals processor, in the same run: can the sink keep up?

    REDIS_URL=redis://127.0.0.1:6379/0 DATABASE_URL=postgresql://... N=20000 python benchmarks/sink.py

DATABASE_URL unset: a private PostgreSQL is started for the run (tests/pg_server.py);
REDIS_URL unset: a private redis-server. N signals (100 companies, 1,000 contacts) are
enqueued on the signals fast path; one worker process with the real signals processor
and the outbox on drains them (its rate: signals/s); then one sink process drains the
outbox into PostgreSQL (its rate: signal rows/s; the companies' intent rows ride along).
Each process's peak RSS is its row's. The sink's row shows its rate as a ratio of the
processor's: at least 1.0 means the sink keeps up on this machine.
"""

from __future__ import annotations

import asyncio
import multiprocessing

from common import Figures, Timer, database_url, event_count, peak_rss_mb, redis_url, report, unique_prefix
from engine import signal

from config import Settings
from processors import build_handlers
from sink import Sink, apply_migrations
from streams import JobSpec, Producer, QueueWorker, connect

QUEUE = "signals"


def settings_for(url: str, prefix: str, dsn: str) -> Settings:
    return Settings(redis_url=url, key_prefix=prefix, read_block=1, database_url=dsn, database_schema=prefix,
                    sink_poll_interval=0.05, queues={QUEUE: {"concurrency": 100}})


def _process_signals(url: str, prefix: str, dsn: str, count: int) -> tuple[float, float]:
    """In a fresh process: one worker drains the signals queue with the real processor."""

    async def run() -> float:
        settings = settings_for(url, prefix, dsn)
        redis = connect(settings)
        worker = QueueWorker(settings, QUEUE, build_handlers(settings, redis, [QUEUE])[QUEUE])
        with Timer() as processing:
            await worker.run(burst=True)
        await redis.aclose()
        return processing.rate(count)

    return asyncio.run(run()), peak_rss_mb()


def _drain_outbox(url: str, prefix: str, dsn: str, count: int) -> tuple[float, float]:
    """In a fresh process: one sink drains the outbox into PostgreSQL."""

    async def run() -> float:
        settings = settings_for(url, prefix, dsn)
        redis = connect(settings)
        with Timer() as sinking:
            await Sink(settings, redis).run(asyncio.Event(), burst=True)
        await redis.aclose()
        return sinking.rate(count)

    return asyncio.run(run()), peak_rss_mb()


async def measure(url: str, dsn: str, n: int) -> tuple[Figures, Figures]:
    settings = settings_for(url, unique_prefix("sink"), dsn)
    await apply_migrations(settings)
    redis = connect(settings)
    try:
        with Timer() as bulk:
            await Producer(redis, settings).add_many(QUEUE, [JobSpec(signal(i)) for i in range(n)])
        args = (url, settings.key_prefix, dsn, n)
        with multiprocessing.get_context("spawn").Pool(1) as pool:
            processed, processor_rss = await asyncio.to_thread(pool.apply, _process_signals, args)
        with multiprocessing.get_context("spawn").Pool(1) as pool:
            sunk, sink_rss = await asyncio.to_thread(pool.apply, _drain_outbox, args)
    finally:
        await redis.aclose()
    return (Figures("signals fast path, signals processor (outbox on)", None, bulk.rate(n), processed,
                    peak_rss_mb=processor_rss),
            Figures("sink, signal rows into PostgreSQL", None, None, sunk, peak_rss_mb=sink_rss))


def main() -> None:
    n = event_count(20_000)
    with redis_url() as url, database_url() as dsn:
        processor, sink = asyncio.run(measure(url, dsn, n))
    report(f"The sink beside the signals processor, N={n} (ratio >= 1.0: the sink keeps up)", [processor, sink],
           processor)


if __name__ == "__main__":
    main()
