"""Processing throughput with 1, 2 and 4 worker processes, on one Redis and on a
3-master cluster, and what each job costs Redis's CPU and the workers'.

    N=40000 REPEAT=2 python benchmarks/scale.py

Workloads: a regular queue (`research`: job records, rate limit off) with a no-op
handler; the signals fast path with a no-op handler, and with the real signals
processor; the signals queue has PARTITIONS partitions (6) on both topologies. A run
enqueues the jobs, then starts PROCESSES ("1,2,4") worker processes, each running
`streams.run_workers` in burst mode as a `tgjobs workers --processes N` child does (a
supervisor's children run only the built-in processors, hence these). Each connects,
builds its handler and waits at a start line: the clock runs from when all are there to
when the last has drained the queue, so start-up is not timed. Each count runs REPEAT
times (1); the fastest is kept.

One Redis is REDIS_URL (unset: an embedded one); the cluster is an embedded 3-master one,
under a key prefix that spreads the partitions over the masters as evenly as they go.
Beside each rate, over the drain: Redis's CPU time (INFO cpu, used_cpu_user +
used_cpu_sys, all masters) per job and the busiest master's CPU seconds per second (1.0
is one core, Redis's ceiling); the workers' CPU time (rusage) per job and in cores; what
the rest of the machine used (other tenants, the kernel's network work) and left idle,
in cores (/proc/stat). One JSON line per row; `x_one_process` is its rate over the
1-process rate of the same workload and topology in the same run.
"""

from __future__ import annotations

import asyncio
import contextlib
import multiprocessing
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from queue import Empty
from typing import Any

import redis as sync_redis

from common import event_count, floor_sync_client, redis_url, report, unique_prefix
from cpu import cpu_seconds, machine_cpu, redis_cpu
from engine import FAST, REGULAR, counter, handler_for, settings_for, signal

from cli.embedded_cluster import EmbeddedCluster
from config import Settings
from streams import JobSpec, Producer, QueueAdmin, connect, run_workers, tracing
from streams.connection import is_cluster
from streams.keys import partition_keys

START_TIMEOUT_S = 120.0
ENQUEUE_CHUNK = 10_000
PREFIX_TRIES = 1000


@dataclass(frozen=True)
class Workload:
    name: str
    queue: str
    handler: str  # engine.handler_for's kind
    payload: Callable[[int], dict[str, Any]]
    jobs_per_n: int  # jobs = N * this: each drain long enough to time at its speed


def company_counter(i: int) -> dict[str, Any]:
    """The fast path routes an entry to its partition by companyId."""
    return {**counter(i), "companyId": f"comp_{i % 100}"}


WORKLOADS = (
    Workload("regular queue, no-op handler", REGULAR, "no-op", counter, 1),
    Workload("signals fast path, no-op handler", FAST, "no-op", company_counter, 5),
    Workload("signals fast path, signals processor", FAST, "signals processor", signal, 2),
)


@dataclass
class ScaleFigures:
    name: str
    topology: str
    processes: int
    jobs: int
    process_per_s: float
    x_one_process: float
    redis_cpu_us_per_job: float
    redis_busiest_master_cores: float  # the busiest master's CPU seconds per second of drain
    workers_cpu_us_per_job: float
    workers_cores: float
    others_cores: float | None  # CPU the rest of the machine used meanwhile (other tenants, this script)
    idle_cores: float | None  # CPU left idle meanwhile
    partitions_per_master: str  # the signals queue's: "2/2/2" on three masters; a regular queue is on one


@dataclass(frozen=True)
class Drain:
    seconds: float
    masters_cpu: dict[str, float]  # CPU seconds over the drain, by master
    workers_cpu: list[float]  # by worker process
    machine_cpu: tuple[float, float] | None  # the machine's busy and idle CPU seconds

    def figures(self, name: str, topology: str, processes: int, jobs: int, placement: str) -> ScaleFigures:
        redis, workers = sum(self.masters_cpu.values()), sum(self.workers_cpu)
        others = idle = None
        if self.machine_cpu is not None:
            others = max(self.machine_cpu[0] - redis - workers, 0.0) / self.seconds
            idle = self.machine_cpu[1] / self.seconds
        return ScaleFigures(name, topology, processes, jobs, jobs / self.seconds, 1.0, redis / jobs * 1e6,
                            max(self.masters_cpu.values()) / self.seconds, workers / jobs * 1e6,
                            workers / self.seconds, others, idle, placement)


def _worker_process(url: str, prefix: str, partitions: int, workload: Workload, ready: Any, go: Any,
                    results: Any) -> None:
    """One worker process: gets ready, waits for `go`, drains the queue; puts its CPU
    seconds over the drain and the monotonic time it finished on `results`."""

    async def main() -> None:
        settings = settings_for(url, prefix, partitions)
        tracing.setup(settings)  # as `tgjobs workers` does: off unless OTEL_TRACES_EXPORTER says
        redis = connect(settings)
        handler = handler_for(workload.handler, settings, redis)
        await redis.ping()
        ready.put(os.getpid())
        await asyncio.to_thread(go.wait)
        before = cpu_seconds()
        await run_workers(settings, {workload.queue: handler}, burst=True)
        results.put((cpu_seconds() - before, time.monotonic()))
        await redis.aclose()

    asyncio.run(main())


async def enqueue(url: str, prefix: str, partitions: int, workload: Workload, jobs: int) -> None:
    settings = settings_for(url, prefix, partitions)
    redis = connect(settings)
    try:
        producer = Producer(redis, settings)
        for start in range(0, jobs, ENQUEUE_CHUNK):
            await producer.add_many(workload.queue, [JobSpec(workload.payload(i))
                                                     for i in range(start, min(start + ENQUEUE_CHUNK, jobs))])
    finally:
        await redis.aclose()


async def completed_total(url: str, prefix: str, partitions: int, queue: str) -> int:
    settings = settings_for(url, prefix, partitions)
    redis = connect(settings)
    try:
        status = await QueueAdmin(redis, settings).status(queue)
    finally:
        await redis.aclose()
    if status.lag or status.counts.get("waiting") or status.counts.get("active"):
        raise RuntimeError(f"{queue}: the workers exited with jobs left ({status.counts}, lag {status.lag})")
    return status.completed_total


def drain(url: str, prefix: str, partitions: int, workload: Workload, processes: int,
          client: sync_redis.Redis | sync_redis.RedisCluster) -> Drain:
    """Starts the processes and times their drain."""
    spawn = multiprocessing.get_context("spawn")
    ready, results, go = spawn.Queue(), spawn.Queue(), spawn.Event()
    children = [spawn.Process(target=_worker_process, args=(url, prefix, partitions, workload, ready, go, results))
                for _ in range(processes)]
    for child in children:
        child.start()
    try:
        for _ in children:
            wait_for(ready, children)
        before, machine_before = redis_cpu(client), machine_cpu()
        started = time.monotonic()
        go.set()
        outcomes = [wait_for(results, children) for _ in children]
        after, machine_after = redis_cpu(client), machine_cpu()
    finally:
        for child in children:
            child.join(timeout=10)
            if child.is_alive():
                child.kill()
                child.join()
    seconds = max(end for _, end in outcomes) - started
    machine = (None if machine_before is None or machine_after is None
               else (machine_after[0] - machine_before[0], machine_after[1] - machine_before[1]))
    return Drain(seconds, {node: after[node] - before[node] for node in before}, [cpu for cpu, _ in outcomes],
                 machine)


def wait_for(queue: Any, children: list[Any]) -> Any:
    """The next item on `queue`; raises if a child died before putting it."""
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        with contextlib.suppress(Empty):
            return queue.get(timeout=0.5)
        if any(child.exitcode not in (None, 0) for child in children):
            raise RuntimeError(f"a worker process failed (exit codes {[c.exitcode for c in children]})")
    raise RuntimeError(f"no word from the worker processes within {START_TIMEOUT_S:g} s")


def forget(client: sync_redis.Redis | sync_redis.RedisCluster, prefix: str) -> None:
    """Deletes every key of the run (its prefix is unique), so runs do not pile up."""
    keys = list(client.scan_iter(match=f"*{prefix}*", count=1000))
    for start in range(0, len(keys), 1000):
        client.unlink(*keys[start:start + 1000])


def measure(url: str, topology: str, workload: Workload, processes: int, n: int, partitions: int,
            client: sync_redis.Redis | sync_redis.RedisCluster, prefix: str) -> ScaleFigures:
    """One drain. The runs of a workload share `prefix`, so their partitions sit on the
    same masters; each run starts and ends with none of its keys."""
    jobs = n * workload.jobs_per_n
    forget(client, prefix)
    try:
        asyncio.run(enqueue(url, prefix, partitions, workload, jobs))
        timed = drain(url, prefix, partitions, workload, processes, client)
        done = asyncio.run(completed_total(url, prefix, partitions, workload.queue))
        if done != jobs:
            raise RuntimeError(f"{workload.name}: {done} of {jobs} jobs completed")
    finally:
        forget(client, prefix)
    placement = "/".join(map(str, spread(client, prefix, workload.queue, partitions)))
    return timed.figures(f"{workload.name}, {processes} process{'es' if processes > 1 else ''}", topology,
                         processes, jobs, placement)


def spread(client: sync_redis.Redis | sync_redis.RedisCluster, prefix: str, queue: str, partitions: int) -> list[int]:
    """How many of the queue's partitions each master serves (by their slots)."""
    partitions = partitions if queue == FAST else 1
    if not isinstance(client, sync_redis.RedisCluster):
        return [partitions]
    served = [client.nodes_manager.get_node_from_slot(client.keyslot(k.meta)).name
              for k in partition_keys(prefix, queue, partitions)]
    return [served.count(node.name) for node in client.get_primaries()]


def spread_prefix(client: sync_redis.Redis | sync_redis.RedisCluster, queue: str, partitions: int) -> str:
    """A fresh key prefix under which the queue's partitions spread over the masters as
    evenly as they can: which masters the partitions' slots land on depends on the prefix,
    and this measures the cluster, not one prefix's luck (the row says where they sat)."""
    masters = len(client.get_primaries()) if isinstance(client, sync_redis.RedisCluster) else 1
    fewest = -(-partitions // masters)  # on the busiest master, at best
    for _ in range(PREFIX_TRIES):
        prefix = unique_prefix("scale")
        if max(spread(client, prefix, queue, partitions)) <= fewest:
            break
    return prefix


def run_topology(url: str, topology: str, n: int, processes: list[int], partitions: int,
                 repeat: int) -> list[ScaleFigures]:
    """Every workload with each process count, `repeat` times each: the fastest run's row."""
    client = floor_sync_client(url)
    try:
        rows = []
        for workload in WORKLOADS:
            prefix = spread_prefix(client, workload.queue, partitions)
            group = [max((measure(url, topology, workload, count, n, partitions, client, prefix)
                          for _ in range(repeat)), key=lambda row: row.process_per_s) for count in processes]
            for row in group:
                row.x_one_process = row.process_per_s / group[0].process_per_s
            rows += group
        return rows
    finally:
        client.close()


def main() -> None:
    n = event_count(40_000)
    processes = [int(p) for p in os.environ.get("PROCESSES", "1,2,4").split(",")]
    partitions = int(os.environ.get("PARTITIONS", 6))
    repeat = int(os.environ.get("REPEAT", 1))
    print(f"load average {' '.join(f'{x:.2f}' for x in os.getloadavg())} at the start", flush=True)
    with redis_url() as url:
        given = "the cluster at REDIS_URL" if is_cluster(Settings(redis_url=url)) else "one redis"
        single = run_topology(url, given, n, processes, partitions, repeat)
    with EmbeddedCluster(masters=3) as embedded:
        cluster = run_topology(embedded.url, "3-master cluster", n, processes, partitions, repeat)
    print(f"\n{os.cpu_count()} CPUs, load average {' '.join(f'{x:.2f}' for x in os.getloadavg())} at the end; "
          f"N={n}; signals partitions {partitions}; the fastest of {repeat} run(s) each")
    report(single[0].topology.capitalize(), single)
    report("A 3-master cluster", cluster)


if __name__ == "__main__":
    main()
