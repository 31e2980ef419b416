"""What the benchmark scripts share: where Redis is, how many events, timing and output.

REDIS_URL names the server (unset: a private embedded redis-server is started for the
run); N the number of events. Each script prints a table, then one JSON line per
measured configuration with the keys name, enqueue_per_s, enqueue_bulk_per_s,
process_per_s, latency_p50_ms, latency_p99_ms, peak_rss_mb.
"""

from __future__ import annotations

import contextlib
import os
import resource
import secrets
import statistics
import sys
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import orjson

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import redis as sync_redis  # noqa: E402
from redis.asyncio import Redis, RedisCluster  # noqa: E402

from cli.embedded_redis import EmbeddedRedis  # noqa: E402
from config import Settings  # noqa: E402
from streams.connection import is_cluster  # noqa: E402

LATENCY_RATE_PER_S = 500


@dataclass
class Figures:
    name: str
    enqueue_per_s: float | None = None
    enqueue_bulk_per_s: float | None = None
    process_per_s: float | None = None
    latency_p50_ms: float | None = None
    latency_p99_ms: float | None = None
    peak_rss_mb: float | None = None


def event_count(default: int) -> int:
    return int(os.environ.get("N", default))


@contextlib.contextmanager
def redis_url() -> Iterator[str]:
    url = os.environ.get("REDIS_URL")
    if url:
        yield url
        return
    with EmbeddedRedis(data_dir=None, appendonly=False) as server:
        yield server.url


@contextlib.contextmanager
def database_url() -> Iterator[str]:
    """DATABASE_URL, or a private PostgreSQL started for the run (tests/pg_server.py)."""
    url = os.environ.get("DATABASE_URL")
    if url:
        yield url
        return
    from tests.pg_server import temporary_postgres

    with temporary_postgres() as server:
        yield server.url


def floor_client(url: str) -> Redis | RedisCluster:
    """redis-py's own async client with its defaults, as the floor uses it (the cluster
    client when the URL names a cluster node)."""
    return (RedisCluster if is_cluster(Settings(redis_url=url)) else Redis).from_url(url)


def floor_sync_client(url: str) -> sync_redis.Redis | sync_redis.RedisCluster:
    return (sync_redis.RedisCluster if is_cluster(Settings(redis_url=url)) else sync_redis.Redis).from_url(url)


def unique_prefix(label: str) -> str:
    return f"bench{label}{secrets.token_hex(3)}"


class Timer:
    def __enter__(self) -> Timer:
        self.start = time.perf_counter()
        return self

    def __exit__(self, *exc: object) -> None:
        self.seconds = time.perf_counter() - self.start

    def rate(self, count: int) -> float:
        return count / self.seconds if self.seconds > 0 else float("inf")


def percentiles(samples_ms: list[float]) -> tuple[float, float]:
    if len(samples_ms) < 2:
        value = samples_ms[0] if samples_ms else float("nan")
        return value, value
    cuts = statistics.quantiles(samples_ms, n=100, method="inclusive")
    return cuts[49], cuts[98]


def peak_rss_mb() -> float:
    """Peak resident set size of this process's own memory: /proc's VmHWM where there is
    one. (getrusage's ru_maxrss of a spawned child also counts the parent's pages, which
    the child's forked image held until it ran exec.)"""
    with contextlib.suppress(OSError):
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024  # kB
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def redis_version(info: dict[str, object]) -> str:
    return str(info.get("redis_version", "?"))


def cell_text(column: str, value: float | int | str | None) -> str:
    if value is None:
        return "-"
    if isinstance(value, str):
        return value
    if isinstance(value, int):
        return f"{value:,}"
    return f"{value:,.2f}" if "ms" in column or 0 < abs(value) < 10 else f"{value:,.0f}"


def report(title: str, rows: list[Any], floor: Any = None) -> None:
    """Prints the table of `rows` (Figures, or any dataclass whose first field is the
    name), with ratios to `floor` where given, then the JSON lines."""
    columns = [f.name for f in fields(rows[0])][1:]
    print(f"\n{title}")
    header = ["name"] + columns
    table = [header]
    for row in rows:
        cells = [row.name]
        for column in columns:
            value = getattr(row, column)
            cell = cell_text(column, value)
            base = getattr(floor, column) if floor is not None else None
            if value is not None and base and row is not floor and column != "peak_rss_mb":
                cell += f" ({value / base:.2f}x)"
            cells.append(cell)
        table.append(cells)
    widths = [max(len(r[i]) for r in table) for i in range(len(header))]
    for r in table:
        print("  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths))))
    print()
    for row in rows:
        print(orjson.dumps({k: (round(v, 3) if isinstance(v, float) else v)
                            for k, v in asdict(row).items()}).decode())
