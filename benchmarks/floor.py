"""The raw redis-py floor on Redis Streams, with no engine at all.

    REDIS_URL=redis://127.0.0.1:6379/0 N=20000 python benchmarks/floor.py

Single XADD rate; pipelined XADD in batches of 100; consuming with XREADGROUP COUNT
100 and a pipelined XACK, running a no-op handler (a) inline, (b) as one coroutine per
entry under asyncio.gather; the latency of a blocking reader at 500 events/s.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import time
from collections.abc import Awaitable, Callable
from typing import Any

from redis.asyncio import Redis

from common import (LATENCY_RATE_PER_S, Figures, Timer, event_count, floor_client, floor_sync_client, peak_rss_mb,
                    percentiles, redis_url, redis_version, report, unique_prefix)

BATCH = 100
GROUP = "g"


async def enqueue_single(redis: Redis, stream: str, n: int) -> float:
    with Timer() as t:
        for i in range(n):
            await redis.xadd(stream, {"n": i})
    return t.rate(n)


async def enqueue_pipelined(redis: Redis, stream: str, n: int) -> float:
    with Timer() as t:
        for start in range(0, n, BATCH):
            pipe = redis.pipeline(transaction=False)
            for i in range(start, min(start + BATCH, n)):
                pipe.xadd(stream, {"n": i})
            await pipe.execute()
    return t.rate(n)


async def noop(fields: dict[bytes, bytes]) -> None:
    return None


def round_trip_handler(redis: Redis, key: str) -> Callable[[Any], Awaitable[None]]:
    """The common plugged-in handler: one Redis round trip per job (a pipelined INCR and
    RPUSH), the same in the floor and in the engine's rows."""

    async def handle(job: Any) -> None:
        pipe = redis.pipeline(transaction=False)
        pipe.incr(f"{key}:count").rpush(f"{key}:seen", 1)
        await pipe.execute()

    return handle


async def consume(redis: Redis, stream: str, n: int, gather: bool,
                  handler: Callable[[Any], Awaitable[None]] = noop) -> float:
    await redis.xgroup_create(stream, GROUP, id="0", mkstream=True)
    done = 0
    with Timer() as t:
        while done < n:
            reply = await redis.xreadgroup(GROUP, "c", {stream: ">"}, count=BATCH)
            entries = reply[0][1] if reply else []
            if gather:
                await asyncio.gather(*(handler(fields) for _, fields in entries))
            else:
                for _, fields in entries:
                    noop(fields).close()  # the handler's body, without scheduling it
            pipe = redis.pipeline(transaction=False)
            pipe.xack(stream, GROUP, *[entry_id for entry_id, _ in entries])
            await pipe.execute()
            done += len(entries)
    return t.rate(n)


def _publish_paced(url: str, stream: str, count: int) -> None:
    """Runs in its own process: XADDs `count` entries at the offered rate, each
    stamped with the wall clock in ns."""
    client = floor_sync_client(url)
    interval = 1 / LATENCY_RATE_PER_S
    start = time.perf_counter()
    for i in range(count):
        delay = start + i * interval - time.perf_counter()
        if delay > 0:
            time.sleep(delay)
        client.xadd(stream, {"ts": time.time_ns()})
    client.close()


async def latency(redis: Redis, url: str, stream: str, count: int) -> tuple[float, float]:
    await redis.xgroup_create(stream, GROUP, id="$", mkstream=True)
    producer = multiprocessing.get_context("spawn").Process(target=_publish_paced, args=(url, stream, count))
    producer.start()
    samples: list[float] = []
    while len(samples) < count:
        reply = await redis.xreadgroup(GROUP, "c", {stream: ">"}, count=BATCH, block=2000)
        now = time.time_ns()
        if not reply:
            if not producer.is_alive():
                break
            continue
        entries = reply[0][1]
        samples += [(now - int(fields[b"ts"])) / 1e6 for _, fields in entries]
        await redis.xack(stream, GROUP, *[entry_id for entry_id, _ in entries])
    producer.join()
    return percentiles(samples)


async def measure(url: str, n: int) -> Figures:
    redis = floor_client(url)
    prefix = unique_prefix("floor")
    try:
        single = await enqueue_single(redis, f"{prefix}:single", n)
        bulk = await enqueue_pipelined(redis, f"{prefix}:inline", n)
        await enqueue_pipelined(redis, f"{prefix}:gather", n)
        inline = await consume(redis, f"{prefix}:inline", n, gather=False)
        gathered = await consume(redis, f"{prefix}:gather", n, gather=True)
        await enqueue_pipelined(redis, f"{prefix}:trip", n)
        tripped = await consume(redis, f"{prefix}:trip", n, gather=True,
                                handler=round_trip_handler(redis, f"{prefix}:effects"))
        p50, p99 = await latency(redis, url, f"{prefix}:latency", min(n, 2 * LATENCY_RATE_PER_S * 2))
        version = redis_version(await redis.info("server"))
        await redis.delete(*[f"{prefix}:{s}" for s in ("single", "inline", "gather", "latency", "trip",
                                                       "effects:count", "effects:seen")])
    finally:
        await redis.aclose()
    print(f"floor: redis {version}, N={n}; consume inline {inline:,.0f}/s, gather {gathered:,.0f}/s, "
          f"gather with one round trip per job {tripped:,.0f}/s")
    return Figures("floor", single, bulk, inline, p50, p99, peak_rss_mb()), gathered, tripped


def run_floor(url: str, n: int) -> tuple[Figures, Figures, Figures]:
    """The floor's figures: rows with inline consume, gather consume, and gather consume
    running the round-trip handler."""
    inline, gathered, tripped = asyncio.run(measure(url, n))

    def row(name: str, rate: float) -> Figures:
        return Figures(name, inline.enqueue_per_s, inline.enqueue_bulk_per_s, rate, inline.latency_p50_ms,
                       inline.latency_p99_ms, inline.peak_rss_mb)

    return inline, row("floor (gather consume)", gathered), row("floor (gather, round-trip handler)", tripped)


def main() -> None:
    n = event_count(20_000)
    with redis_url() as url:
        rows = run_floor(url, n)
    report(f"Redis Streams floor, N={n}", list(rows))


if __name__ == "__main__":
    main()
