"""GET /metrics: the queues' figures in the Prometheus text format, read from Redis at
scrape time (QueueAdmin.all_status, the worker registry, INFO memory), so nothing
polls Redis between scrapes and every scrape is current.

Each scrape builds a QueueCollector over the figures it read and renders a registry
holding only that collector (concurrent scrapes share nothing), then appends this
process's own registry (streams.metrics: process figures, and the worker figures
when workers run in this process, as under `tgjobs up`).

Queue figures are gauges of what Redis holds now (`tgjobs_queue_jobs{state="completed"}`
is the completed records retained: retention and clean lower it), but for two counters
kept in the queue's meta hash by the scripts themselves: tgjobs_queue_jobs_completed_total
(runs completed) and tgjobs_queue_jobs_failed_total (jobs dead-lettered), which every
API process reports alike and no worker restart resets.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from typing import Any

from aiohttp import web
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4
from prometheus_client.registry import Collector
from redis.asyncio import RedisCluster

from api.state import ADMIN, REDIS, SETTINGS
from processors.outbox_admin import OutboxAdmin, SinkFigures
from streams import metrics as worker_metrics
from streams.figures import QueueStatus
from streams.keys import GROUP

log = logging.getLogger(__name__)
STATES = ("waiting", "active", "delayed", "paused", "completed", "failed")


class QueueCollector(Collector):
    """Gauges of one snapshot of every queue (and of Redis), as read for one scrape."""

    def __init__(self, statuses: Sequence[QueueStatus], live_workers: dict[str, int] | None,
                 memory: dict[str, Any] | None, sink: SinkFigures) -> None:
        self.statuses = statuses
        self.sink = sink
        self.live_workers = live_workers
        self.memory = memory

    def collect(self) -> Iterator[Metric]:
        jobs = GaugeMetricFamily("tgjobs_queue_jobs", "Jobs of the queue by state", labels=["queue", "state"])
        paused = GaugeMetricFamily("tgjobs_queue_paused", "1 when the queue is paused", labels=["queue"])
        dead = GaugeMetricFamily("tgjobs_queue_dead_letters", "Entries in the dead-letter stream", labels=["queue"])
        length = GaugeMetricFamily("tgjobs_queue_stream_length", "Entries in the lane stream (XLEN)",
                                   labels=["queue", "lane", "partition"])
        lag = GaugeMetricFamily("tgjobs_queue_group_lag", "Entries of the lane the consumer group has not read "
                                "yet (absent when Redis cannot tell)", labels=["queue", "lane", "partition", "group"])
        pending = GaugeMetricFamily("tgjobs_queue_group_pending", "Entries delivered to the group and not acked",
                                    labels=["queue", "lane", "partition", "group"])
        oldest = GaugeMetricFamily("tgjobs_queue_oldest_pending_seconds", "Idle time of the group's oldest "
                                   "pending entry", labels=["queue", "lane", "partition", "group"])
        consumers = GaugeMetricFamily("tgjobs_queue_group_consumers", "Consumers of the group",
                                      labels=["queue", "lane", "partition", "group"])
        completed = CounterMetricFamily("tgjobs_queue_jobs_completed", "Runs of the queue completed, from Redis "
                                        "(retention and clean do not lower it)", labels=["queue"])
        failed = CounterMetricFamily("tgjobs_queue_jobs_failed", "Jobs of the queue failed for good "
                                     "(dead-lettered), from Redis", labels=["queue"])
        for status in self.statuses:
            q = status.queue
            completed.add_metric([q], status.completed_total)
            failed.add_metric([q], status.failed_total)
            for state in STATES:
                jobs.add_metric([q, state], status.counts.get(state, 0))
            paused.add_metric([q], 1 if status.paused else 0)
            dead.add_metric([q], status.dead)
            for lane in status.lanes:
                partition = str(lane.partition)
                length.add_metric([q, lane.lane, partition], lane.length)
                if lane.engine_group is None:  # no group yet: every entry is lag
                    lag.add_metric([q, lane.lane, partition, GROUP], lane.length)
                    pending.add_metric([q, lane.lane, partition, GROUP], 0)
                    consumers.add_metric([q, lane.lane, partition, GROUP], 0)
                for group in lane.groups:
                    labels = [q, lane.lane, partition, group.name]
                    if group.lag is not None:
                        lag.add_metric(labels, group.lag)
                    pending.add_metric(labels, group.pending)
                    consumers.add_metric(labels, len(group.consumers))
                    if group.oldest_pending_ms is not None:
                        oldest.add_metric(labels, group.oldest_pending_ms / 1000)
        yield from (jobs, completed, failed, paused, dead, length, lag, pending, oldest, consumers)
        if self.live_workers is not None:
            workers = GaugeMetricFamily("tgjobs_queue_live_workers", "Worker processes registered for the queue "
                                        "whose heartbeat has not expired", labels=["queue"])
            for status in self.statuses:
                workers.add_metric([status.queue], self.live_workers.get(status.queue, 0))
            yield workers
        if self.memory is not None:
            yield GaugeMetricFamily("tgjobs_redis_memory_used_bytes", "Redis used_memory (INFO memory)",
                                    value=float(self.memory.get("used_memory", 0)))
            yield GaugeMetricFamily("tgjobs_redis_maxmemory_bytes", "Redis maxmemory (0: no limit)",
                                    value=float(self.memory.get("maxmemory", 0)))
        yield from self._sink()

    def _sink(self) -> Iterator[Metric]:
        yield GaugeMetricFamily("tgjobs_sink_lag", "Outbox entries not yet written to PostgreSQL",
                                value=self.sink.lag)
        yield GaugeMetricFamily("tgjobs_sink_dead_letters", "Rows PostgreSQL rejected, kept as sink dead letters",
                                value=self.sink.dead_letters)
        rows = CounterMetricFamily("tgjobs_sink_rows", "Rows written to PostgreSQL by every sink process, from "
                                   "Redis", labels=["table"])
        for table, count in self.sink.rows_total.items():
            rows.add_metric([table], count)
        yield rows


async def _live_workers(request: web.Request) -> dict[str, int] | None:
    """Live worker processes per queue, from the worker registry; None when this
    build has no registry."""
    try:
        from streams.registry import WorkerRegistry
    except ImportError:
        return None
    per_queue: dict[str, int] = {}
    for worker in await WorkerRegistry(request.app[REDIS], request.app[SETTINGS]).live():
        for queue in worker.queues:
            per_queue[queue] = per_queue.get(queue, 0) + 1
    return per_queue


async def _memory(request: web.Request) -> dict[str, Any] | None:
    """INFO memory; on a cluster, used_memory summed over the masters."""
    redis = request.app[REDIS]
    try:
        if isinstance(redis, RedisCluster):
            per_node = await redis.info("memory", target_nodes=RedisCluster.PRIMARIES)
            return {"used_memory": sum(int(node.get("used_memory", 0)) for node in per_node.values())}
        return await redis.info("memory")
    except Exception as exc:  # a managed Redis may refuse INFO: the queue figures still count
        if "unknown command" in str(exc).lower() or "no permissions" in str(exc).lower():
            return None
        raise


async def metrics(request: web.Request) -> web.Response:
    statuses = await request.app[ADMIN].all_status()
    registry = CollectorRegistry(auto_describe=False)
    sink = await OutboxAdmin(request.app[REDIS], request.app[SETTINGS]).figures()
    registry.register(QueueCollector(statuses, await _live_workers(request), await _memory(request), sink))
    body = generate_latest(registry) + generate_latest(worker_metrics.REGISTRY)
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_PLAIN_0_0_4})
