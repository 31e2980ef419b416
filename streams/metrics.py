"""What one worker process measures, for Prometheus: jobs in flight, how long jobs
waited in their stream and how long they ran, outcomes, and rate-limiter waits.

Everything lives in this module's own `REGISTRY` (with the process and Python
collectors), never in prometheus_client's global one, so importing the engine
registers nothing behind a caller's back. `tgjobs workers --metrics-port N` serves it
with `serve()`; the API's /metrics appends it (so `tgjobs up`, one process, has one
endpoint). The queue-wide figures (counts, lag, pending, dead letters) are not here:
they are Redis's, and the API reads them at scrape time (api.routes.metrics).

The worker calls the hooks below; each costs a dictionary lookup and an addition,
and none writes to Redis. Queue wait is read off the stream entry id (its first part
is the millisecond Redis appended it), on first deliveries only: a retry or a
reclaimed entry keeps its old id, and its wait would count the earlier attempts.
"""

from __future__ import annotations

import threading
import time
import weakref
from bisect import bisect_left
from collections.abc import Iterable, Iterator, Sequence
from functools import cache
from typing import Any, Literal, Protocol

from prometheus_client import (GC_COLLECTOR, PLATFORM_COLLECTOR, PROCESS_COLLECTOR, CollectorRegistry, Counter,
                               start_http_server)
from prometheus_client.core import GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.utils import floatToGoString
from prometheus_client.registry import Collector

NAMESPACE = "tgjobs_worker"
# Jobs here run from milliseconds (signals) to minutes (research, reports).
RUN_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0)
WAIT_BUCKETS = (0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 1800.0, 3600.0)

Outcome = Literal["completed", "retry", "dead", "discarded"]
FAILED_OUTCOMES = ("retry", "dead")


class _HasInFlight(Protocol):
    queue: str

    @property
    def in_flight(self) -> int: ...


class InFlight(Collector):
    """Jobs running now per queue, read from the live workers at scrape time (no
    counter to keep in step with task starts, ends and cancellations)."""

    def __init__(self) -> None:
        self._workers: weakref.WeakSet[Any] = weakref.WeakSet()
        self._lock = threading.Lock()  # the HTTP server scrapes from its own thread

    def track(self, worker: _HasInFlight) -> None:
        with self._lock:
            self._workers.add(worker)

    def collect(self) -> Iterator[Metric]:
        family = GaugeMetricFamily(f"{NAMESPACE}_jobs_in_flight", "Jobs this process is running now",
                                   labels=["queue"])
        with self._lock:
            workers = list(self._workers)
        totals: dict[str, int] = {}
        for worker in workers:
            try:
                totals[worker.queue] = totals.get(worker.queue, 0) + worker.in_flight
            except RuntimeError:  # its dict changed under the scrape thread: skip it this time
                continue
        for queue, count in sorted(totals.items()):
            family.add_metric([queue], count)
        yield family


REGISTRY = CollectorRegistry(auto_describe=True)
for _collector in (PROCESS_COLLECTOR, PLATFORM_COLLECTOR, GC_COLLECTOR):
    REGISTRY.register(_collector)
IN_FLIGHT = InFlight()
REGISTRY.register(IN_FLIGHT)


class QueueHistogram(Collector):
    """A histogram per queue that takes a whole batch of observations at once:
    prometheus_client's Histogram takes one value per call, with a lock and a bucket
    walk each, which was a third of the fast path's CPU at one call per entry."""

    def __init__(self, name: str, documentation: str, buckets: Sequence[float]) -> None:
        self.name = name
        self.documentation = documentation
        self.bounds = tuple(buckets)
        self._queues: dict[str, tuple[list[int], list[float]]] = {}  # queue -> (bucket counts, [sum])
        self._lock = threading.Lock()  # the HTTP server scrapes from its own thread

    def observe_many(self, queue: str, values: Iterable[float]) -> None:
        bounds = self.bounds
        counts = [0] * (len(bounds) + 1)
        total = 0.0
        for value in values:
            counts[bisect_left(bounds, value)] += 1  # bucket i holds bounds[i-1] < value <= bounds[i]
            total += value
        with self._lock:
            kept, kept_sum = self._kept(queue)
            for i, count in enumerate(counts):
                kept[i] += count
            kept_sum[0] += total

    def observe(self, queue: str, value: float) -> None:
        with self._lock:
            kept, kept_sum = self._kept(queue)
            kept[bisect_left(self.bounds, value)] += 1
            kept_sum[0] += value

    def _kept(self, queue: str) -> tuple[list[int], list[float]]:
        """The queue's bucket counts and sum; call under the lock."""
        return self._queues.setdefault(queue, ([0] * (len(self.bounds) + 1), [0.0]))

    def collect(self) -> Iterator[Metric]:
        family = HistogramMetricFamily(self.name, self.documentation, labels=["queue"])
        with self._lock:
            rows = [(queue, list(counts), sums[0]) for queue, (counts, sums) in sorted(self._queues.items())]
        for queue, counts, total in rows:
            cumulative, buckets = 0, []
            for bound, count in zip((*self.bounds, float("inf")), counts):
                cumulative += count
                buckets.append((floatToGoString(bound), cumulative))
            family.add_metric([queue], buckets, total)
        yield family


RUN_SECONDS = QueueHistogram(f"{NAMESPACE}_job_run_seconds", "Time a handler ran, per attempt (a batch "
                             "handler's jobs each count their share of the batch's time)", RUN_BUCKETS)
WAIT_SECONDS = QueueHistogram(f"{NAMESPACE}_job_queue_wait_seconds", "Time from a job's entry being appended "
                              "to its first start (from the entry id)", WAIT_BUCKETS)
REGISTRY.register(RUN_SECONDS)
REGISTRY.register(WAIT_SECONDS)
COMPLETED = Counter(f"{NAMESPACE}_jobs_completed", "Runs this process completed", ["queue"], registry=REGISTRY)
FAILED = Counter(f"{NAMESPACE}_jobs_failed", "Runs this process failed; outcome retry (will run again) or dead "
                 "(dead-lettered)", ["queue", "outcome"], registry=REGISTRY)
DISCARDED = Counter(f"{NAMESPACE}_jobs_discarded", "Runs whose outcome was discarded: another worker had taken "
                    "the job over", ["queue"], registry=REGISTRY)
REQUEUED = Counter(f"{NAMESPACE}_jobs_requeued", "Waiting jobs found with no stream entry a worker would read "
                   "(evicted?) and queued again", ["queue"], registry=REGISTRY)
LIMITED = Counter(f"{NAMESPACE}_rate_limited", "Reads that found the queue's rate limit spent", ["queue"],
                  registry=REGISTRY)
LIMITED_SECONDS = Counter(f"{NAMESPACE}_rate_limit_wait_seconds", "Time spent waiting for rate-limit permits",
                          ["queue"], registry=REGISTRY)


# -- the worker's hooks --------------------------------------------------------------

def track(worker: _HasInFlight) -> None:
    """Counts `worker.in_flight` under its queue while the worker object lives."""
    IN_FLIGHT.track(worker)


def entry_age(entry_id: str, now_s: float | None = None) -> float | None:
    """Seconds since Redis appended `entry_id` ("<ms>-<seq>"); None for an id of
    another shape. A clock behind Redis's gives 0, never a negative wait."""
    try:
        appended_ms = int(entry_id.split("-", 1)[0])
    except ValueError:
        return None
    now = time.time() if now_s is None else now_s
    return max(now - appended_ms / 1000, 0.0)


def jobs_started(queue: str, deliveries: Iterable[Any]) -> None:
    """Observes the queue wait of the first deliveries among `deliveries`
    (streams.delivery.Delivery: entry_id, attempts_made, stalls, delivery)."""
    now = time.time()
    ages = (entry_age(d.entry_id, now) for d in deliveries
            if d.delivery == 1 and d.attempts_made == 0 and d.stalls == 0)
    WAIT_SECONDS.observe_many(queue, (age for age in ages if age is not None))


def job_ran(queue: str, seconds: float, count: int = 1) -> None:
    """`count` jobs ran in `seconds` together (a batch handler): each is observed with
    its share, so the histogram's sum stays the time actually spent."""
    if count <= 1:
        RUN_SECONDS.observe(queue, seconds)
    else:
        RUN_SECONDS.observe_many(queue, [seconds / count] * count)


def jobs_ran(queue: str, durations: Sequence[float]) -> None:
    """Jobs that ran one after another, each for its own duration (seconds)."""
    RUN_SECONDS.observe_many(queue, durations)


def job_outcome(queue: str, outcome: str, count: int = 1) -> None:
    if count <= 0:
        return
    if outcome == "completed":
        _completed(queue).inc(count)
    elif outcome in FAILED_OUTCOMES:
        FAILED.labels(queue, outcome).inc(count)
    else:
        DISCARDED.labels(queue).inc(count)


def jobs_requeued(queue: str, count: int) -> None:
    REQUEUED.labels(queue).inc(count)


def rate_limited(queue: str, wait_s: float) -> None:
    LIMITED.labels(queue).inc()
    LIMITED_SECONDS.labels(queue).inc(max(wait_s, 0.0))


# Label children bound once per queue: labels() takes a lock and builds a key on every
# call, which showed in the fast path's profile.

@cache
def _completed(queue: str) -> Any:
    return COMPLETED.labels(queue)


# -- serving ---------------------------------------------------------------------------

class MetricsServer:
    """The HTTP server of `serve()`; `close()` stops it (a process exiting needs not)."""

    def __init__(self, server: Any, thread: threading.Thread, port: int) -> None:
        self._server = server
        self._thread = thread
        self.port = port

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)


def serve(port: int, addr: str = "0.0.0.0") -> MetricsServer:
    """Serves REGISTRY at http://addr:port/metrics from a daemon thread. Port 0 picks a
    free one (see .port). Raises OSError when the port cannot be bound."""
    server, thread = start_http_server(port, addr=addr, registry=REGISTRY)
    return MetricsServer(server, thread, server.server_address[1])
