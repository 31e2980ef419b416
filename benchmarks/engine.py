"""The engine measured against the floor, in the same run.

    REDIS_URL=redis://127.0.0.1:6379/0 N=20000 python benchmarks/engine.py

For a regular queue (records, leases, retries on) and for the signals fast path:
enqueue one at a time, enqueue in batches, processing with a no-op handler, latency
from publish to handler start at 500 events/s; the fast path with the real signals
processor (enqueue and processing; latency is the no-op row's); and both with the common
plugged-in handler, one Redis round trip per job, beside the floor's gather consume
running the same handler. Every figure is printed beside the
floor's as a ratio: the regular queue's processing beside the floor's gather consume,
the fast path's beside the floor's inline consume. The processing runs in a worker process of its own, whose peak
RSS is the row's peak_rss_mb (the producer's lists are not in it).

Tracing follows the settings as in `tgjobs workers`: with OTEL_TRACES_EXPORTER=otlp (and
OTEL_EXPORTER_OTLP_ENDPOINT, e.g. at `benchmarks/otlp_sink.py`) both the producer and the
worker processes trace. benchmarks/tracing_ab.py alternates off and on in one run.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import time
from typing import Any


from common import (LATENCY_RATE_PER_S, Figures, Timer, event_count, floor_client, peak_rss_mb, percentiles,
                    redis_url, report, unique_prefix)
from floor import round_trip_handler, run_floor

from config import Settings
from processors import build_handlers
from streams import JobContext, JobSpec, Producer, QueueWorker, connect, tracing

REGULAR, FAST = "research", "signals"
CONCURRENCY = 100  # handlers at once on both paths: as many as the floor runs (a read of 100, gathered)


def settings_for(url: str, prefix: str, partitions: int = 1) -> Settings:
    """`partitions`: the signals queue's (benchmarks/scale.py spreads it over a cluster)."""
    return Settings(redis_url=url, key_prefix=prefix, read_block=1,
                    queues={REGULAR: {"rate_limit": None, "concurrency": CONCURRENCY, "keep_completed": 1000},
                            FAST: {"concurrency": CONCURRENCY, "partitions": partitions}})


async def noop(ctx: JobContext) -> None:
    return None


def counter(i: int) -> dict[str, Any]:
    return {"n": i}


def signal(i: int) -> dict[str, Any]:
    """A signal for the real processor: 100 companies, 1,000 contacts, every id distinct."""
    return {"signalId": f"sig_{i}", "signalType": "Email Open", "companyId": f"comp_{i % 100}",
            "data": {"contactId": f"c_{i % 1000}"}}


def handler_for(kind: str, settings: Settings, redis: Any) -> Any:
    """"no-op", "round trip" (one pipelined INCR + RPUSH per job, as the floor's row) or
    "signals processor"."""
    if kind == "signals processor":
        return build_handlers(settings, redis)[FAST]
    if kind == "round trip":
        # Its own client is the floor's (redis-py's defaults), so both run the same
        # handler; the engine's connections are its own (streams.connect).
        return round_trip_handler(floor_client(settings.redis_connection_url()), f"{settings.key_prefix}:effects")
    return noop


def _drain_in_worker_process(url: str, prefix: str, queue: str, kind: str, count: int) -> tuple[float, float]:
    """Runs in a fresh process: one worker drains the queue; returns its rate and the
    process's peak RSS (MB)."""

    async def drain() -> float:
        settings = settings_for(url, prefix)
        tracing.setup(settings)
        redis = connect(settings)
        worker = QueueWorker(settings, queue, handler_for(kind, settings, redis))
        with Timer() as processing:
            await worker.run(burst=True)
        await redis.aclose()
        return processing.rate(count)

    return asyncio.run(drain()), peak_rss_mb()


async def through_engine(url: str, n: int, queue: str, kind: str, name: str,
                         payload: Any = counter, measure_latency: bool = True) -> Figures:
    """`kind`: the handler the worker runs (see handler_for)."""
    settings = settings_for(url, unique_prefix("engine"))
    redis = connect(settings)
    producer = Producer(redis, settings)
    p50 = p99 = None
    try:
        with Timer() as single:
            for i in range(n):
                await producer.add(queue, payload(i))
        with Timer() as bulk:
            await producer.add_many(queue, [JobSpec(payload(n + i)) for i in range(n)])
        with multiprocessing.get_context("spawn").Pool(1) as pool:
            process_rate, worker_rss = await asyncio.to_thread(
                pool.apply, _drain_in_worker_process,
                (settings.redis_connection_url(), settings.key_prefix, queue, kind, 2 * n))
        if measure_latency:
            p50, p99 = await latency(settings, queue, min(n, 2 * LATENCY_RATE_PER_S * 2))
    finally:
        await redis.aclose()
    return Figures(name, single.rate(n), bulk.rate(n), process_rate, p50, p99, worker_rss)


def _publish_paced(url: str, prefix: str, queue: str, count: int) -> None:
    """Runs in its own process: adds `count` jobs at the offered rate through the
    engine's producer, each stamped with the wall clock in ns."""

    async def publish() -> None:
        settings = settings_for(url, prefix)
        tracing.setup(settings)
        redis = connect(settings)
        producer = Producer(redis, settings)
        interval = 1 / LATENCY_RATE_PER_S
        start = time.perf_counter()
        for i in range(count):
            delay = start + i * interval - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            await producer.add(queue, {"ts": time.time_ns()})
        await redis.aclose()

    asyncio.run(publish())


async def latency(settings: Settings, queue: str, count: int) -> tuple[float, float]:
    samples: list[float] = []

    async def measure(ctx: JobContext) -> Any:
        samples.append((time.time_ns() - ctx.data["ts"]) / 1e6)
        if len(samples) >= count:
            worker.stop()

    worker = QueueWorker(settings, queue, measure)
    task = asyncio.create_task(worker.run())
    await asyncio.sleep(0.2)  # let the worker reach its blocking read
    producer = multiprocessing.get_context("spawn").Process(
        target=_publish_paced, args=(settings.redis_connection_url(), settings.key_prefix, queue, count))
    producer.start()
    await task
    producer.join()
    return percentiles(samples)


def main() -> None:
    n = event_count(20_000)
    with redis_url() as url:
        tracing.setup(settings_for(url, "unused"))
        floor, floor_gather, floor_trip = run_floor(url, n)
        regular = asyncio.run(through_engine(url, n, REGULAR, "no-op", "regular queue, no-op handler"))
        fast = asyncio.run(through_engine(url, n, FAST, "no-op", "signals fast path, no-op handler"))
        regular_trip = asyncio.run(through_engine(url, n, REGULAR, "round trip", "regular queue, round-trip handler",
                                                  measure_latency=False))
        fast_trip = asyncio.run(through_engine(url, n, FAST, "round trip", "signals fast path, round-trip handler",
                                               measure_latency=False))
        real = asyncio.run(through_engine(url, n, FAST, "signals processor", "signals fast path, signals processor",
                                          signal, measure_latency=False))
    report(f"Regular queue against the floor (gather consume), N={n}", [floor_gather, regular], floor_gather)
    report(f"Signals fast path against the floor (inline consume), N={n}", [floor, fast, real], floor)
    report(f"A handler with one Redis round trip per job, against the floor's gather consume running it, N={n}",
           [floor_trip, regular_trip, fast_trip], floor_trip)


if __name__ == "__main__":
    main()
