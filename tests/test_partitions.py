"""A queue split into partitions (QUEUES__SIGNALS__PARTITIONS=N): entries routed by the
policy's `partition_by` field, one company's signals in order on one partition, workers
reading every partition, and admin figures, dead letters, replay, purge and pause across
all of them."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import orjson
import pytest
from pydantic import ValidationError
from redis.asyncio import Redis

from config import DEFAULT_POLICIES, QueuePolicy, Settings
from streams import InvalidJob, JobContext, Producer, QueueAdmin, QueueWorker, SignalPublisher
from streams.keys import SLOTS, TAG_WINDOW, QueueKeys, cluster_slot, partition_keys, partition_of

Q = "signals"
PARTITIONS = 3


def partitioned(make_settings: Callable[..., Settings], **row: Any) -> Settings:
    return make_settings(signals={"partitions": PARTITIONS, **row})


async def drain_all(settings: Settings, handler: Any, timeout: float = 30) -> None:
    workers = [QueueWorker(settings, Q, handler, partition=p) for p in range(PARTITIONS)]
    await asyncio.wait_for(asyncio.gather(*(w.run(burst=True) for w in workers)), timeout)


def signal(company: str, n: int) -> dict[str, Any]:
    return {"signalId": f"{company}-{n}", "companyId": company, "signalType": "email_open"}


def test_partition_keys_have_distinct_hash_tags_and_partition_zero_keeps_the_queue_tag() -> None:
    keys = partition_keys("tg", Q, PARTITIONS)
    assert [k.tag for k in keys] == ["{tg:signals}", "{tg:signals/1.137}", "{tg:signals/2.40}"]
    assert keys[0] == QueueKeys("tg", Q, 0, PARTITIONS)
    assert keys[2].lane("high") == "{tg:signals/2.40}:stream:high" and keys[2].dead == "{tg:signals/2.40}:dead"
    assert partition_of("acme", 1) == 0
    assert {partition_of(f"company-{n}", PARTITIONS) for n in range(50)} == {0, 1, 2}


@pytest.mark.parametrize("count", [2, 3, 6, 16, 64])
def test_partition_slots_sit_evenly_around_the_slot_space(count: int) -> None:
    """The slots of N partitions' tags split the circle of 16384 slots into gaps of
    16384 / N, give or take the search window (p0..pN-1 as plain names can sit side by side)."""
    slots = sorted(cluster_slot(k.tag[1:-1]) for k in partition_keys("tg", Q, count))
    gaps = [b - a for a, b in zip(slots, slots[1:])] + [slots[0] + SLOTS - slots[-1]]
    assert all(abs(gap - SLOTS / count) <= 2 * TAG_WINDOW + 1 for gap in gaps), gaps


def test_a_cluster_of_three_masters_gets_two_of_six_partitions_each() -> None:
    thirds = [cluster_slot(k.tag[1:-1]) * 3 // SLOTS for k in partition_keys("tg", Q, 6)]
    assert sorted(thirds) == [0, 0, 1, 1, 2, 2]


def test_partitions_need_the_fast_path_and_a_routing_field() -> None:
    row = DEFAULT_POLICIES[Q].model_dump()
    with pytest.raises(ValidationError, match="needs records = false"):
        QueuePolicy(**{**row, "partitions": 2, "records": True})
    with pytest.raises(ValidationError, match="needs partition_by"):
        QueuePolicy(**{**row, "partitions": 2, "partition_by": None})
    with pytest.raises(ValidationError):
        QueuePolicy(**{**row, "partitions": 0})
    assert QueuePolicy(**{**row, "partitions": 4}).partitions == 4


async def test_signals_route_by_company_and_stay_in_order(
        engine_redis: Redis, make_settings: Callable[..., Settings]) -> None:
    settings = partitioned(make_settings)
    companies = [f"company-{n}" for n in range(12)]
    publisher = SignalPublisher(engine_redis, settings, queue=Q, chunk_size=7)
    published = [signal(company, n) for n in range(10) for company in companies]
    ids = await publisher.publish_signals(published)
    assert len(set(ids)) == len(published)  # job ids name their partition: entry ids repeat across streams
    assert {i.split("-")[1] for i in ids if i.split("-")[1].startswith("p")} <= {"p1", "p2"}

    keys = partition_keys(settings.key_prefix, Q, PARTITIONS)
    lengths = [await engine_redis.xlen(k.lane("normal")) for k in keys]
    assert sum(lengths) == len(published) and all(lengths), lengths  # every partition got some
    for company in companies:
        home = keys[partition_of(company, PARTITIONS)].lane("normal")
        entries = await engine_redis.xrange(home)
        assert sum(orjson.loads(f["data"])["companyId"] == company for _, f in entries) == 10

    admin = QueueAdmin(engine_redis, settings)
    before = await admin.status(Q)
    assert (before.length, before.lag, before.counts["waiting"]) == (120, 120, 120)
    assert len(before.lanes) == 3 * PARTITIONS and {lane.partition for lane in before.lanes} == {0, 1, 2}

    seen: dict[str, list[int]] = {}

    async def handler(ctx: JobContext) -> None:
        company, n = ctx.data["signalId"].rsplit("-", 1)
        seen.setdefault(company, []).append(int(n))

    await drain_all(settings, handler)
    assert seen == {company: list(range(10)) for company in companies}
    after = await admin.status(Q)
    assert (after.length, after.lag, after.pending, after.dead) == (120, 0, 0, 0)
    assert (after.counts["completed"], after.counts["waiting"], after.counts["active"]) == (120, 0, 0)


async def test_an_entry_without_its_routing_field_is_refused(
        engine_redis: Redis, make_settings: Callable[..., Settings]) -> None:
    settings = partitioned(make_settings)
    producer = Producer(engine_redis, settings)
    with pytest.raises(InvalidJob, match="data.companyId"):
        await producer.add(Q, {"signalId": "s1"})
    with pytest.raises(InvalidJob, match="data.companyId"):
        await producer.add(Q, {"signalId": "s1", "companyId": ["a"]})
    added = await producer.add(Q, {"signalId": "s2", "companyId": 42})
    home = QueueKeys(settings.key_prefix, Q, partition_of("42", PARTITIONS), PARTITIONS).lane("normal")
    prefix = QueueKeys(settings.key_prefix, Q, partition_of("42", PARTITIONS)).entry_job_prefix
    assert added.id == prefix + (await engine_redis.xrange(home))[0][0]
    assert (await QueueAdmin(engine_redis, settings).status(Q)).length == 1


async def test_dead_letters_replay_and_purge_span_every_partition(
        engine_redis: Redis, make_settings: Callable[..., Settings]) -> None:
    settings = partitioned(make_settings, attempts=1)
    keys = partition_keys(settings.key_prefix, Q, PARTITIONS)
    for k in keys:  # one unparsable entry per partition, as a foreign producer might write
        await engine_redis.xadd(k.lane("normal"), {"data": f"{{broken {k.partition}"})
        await engine_redis.xadd(k.lane("normal"), {"data": orjson.dumps({"n": k.partition}).decode()})
    ran: list[int] = []

    async def handler(ctx: JobContext) -> None:
        ran.append(ctx.data["n"])

    await drain_all(settings, handler)
    admin = QueueAdmin(engine_redis, settings)
    status = await admin.status(Q)
    assert sorted(ran) == [0, 1, 2]
    assert (status.dead, status.counts["failed"], status.counts["completed"]) == (3, 3, 3)
    assert [(d.partition, d.length) for d in status.dead_streams] == [(0, 1), (1, 1), (2, 1)]

    letters = await admin.dead_letters(Q)
    assert sorted(d.partition for d in letters) == [0, 1, 2] and len({d.job_id for d in letters}) == 3
    assert [d.entry_id for d in letters] == sorted((d.entry_id for d in letters),
                                                   key=lambda e: tuple(map(int, e.split("-"))))
    first, rest = await admin.dead_letters(Q, limit=1), await admin.dead_letters(Q, after=letters[0].entry_id)
    assert [d.entry_id for d in first + rest] == [d.entry_id for d in letters]

    replayed = await admin.replay(Q, [letters[1].job_id])
    assert len(replayed) == 1
    home = keys[letters[1].partition].lane("normal")
    assert (await engine_redis.xrange(home))[-1][1]["data"] == letters[1].data  # back in its own partition
    assert (await admin.status(Q)).dead == 2
    assert await admin.purge(Q) == 2
    assert (await admin.status(Q)).dead == 0


async def test_pause_stops_every_partition(engine_redis: Redis, make_settings: Callable[..., Settings]) -> None:
    settings = partitioned(make_settings)
    admin = QueueAdmin(engine_redis, settings)
    await admin.pause(Q)
    for k in partition_keys(settings.key_prefix, Q, PARTITIONS):
        assert await engine_redis.hget(k.meta, "paused") == "1"
    await SignalPublisher(engine_redis, settings, queue=Q).publish_signals([signal(f"c{n}", 0) for n in range(9)])
    ran: list[str] = []

    async def handler(ctx: JobContext) -> None:
        ran.append(ctx.data["signalId"])

    await drain_all(settings, handler)  # burst mode returns at once on a paused queue
    status = await admin.status(Q)
    assert ran == [] and status.paused and status.counts["paused"] == 9
    await admin.resume(Q)
    await drain_all(settings, handler)
    assert len(ran) == 9 and (await admin.status(Q)).counts["completed"] == 9
