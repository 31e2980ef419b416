"""The signals producer SDK: single and batch publish (async and sync, the sync one from a
thread), the wire format written, validation with SignalData, and the worker processing
what was published with the real signals processor."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import orjson
import pytest
from redis_server import sync_client
from redis.asyncio import Redis

from config import Settings
from processors.publish import signal_publisher, sync_signal_publisher
from processors.signals import SignalProcessor
from processors.store import Store
from streams import InvalidJob, JobContext, QueueAdmin, QueueWorker, SignalPublisher, SyncSignalPublisher
from streams.keys import QueueKeys

Q = "signals"


def sig(n: int, company: str = "comp_1", **extra: Any) -> dict[str, Any]:
    return {"signalId": f"sig_{n}", "signalType": "Email Open", "companyId": company,
            "data": {"contactId": f"c_{n}"}, **extra}


async def drain(settings: Settings, handler: Any) -> None:
    await asyncio.wait_for(QueueWorker(settings, Q, handler).run(burst=True), 30)


async def entries(redis: Redis, settings: Settings, lane: str = "normal") -> list[tuple[str, dict[str, str]]]:
    return await redis.xrange(QueueKeys(settings.key_prefix, Q).lane(lane))


async def test_async_single_and_batch_publish_write_the_wire_format(
        engine_redis: Redis, make_settings: Callable[..., Settings]) -> None:
    settings = make_settings()
    publisher = signal_publisher(engine_redis, settings)
    one = await publisher.publish_signal(sig(0))
    many = await publisher.publish_signals([sig(n) for n in range(1, 6)] + [sig(6, priority="high")])
    # Entry ids are unique per lane stream (each lane has its own id sequence), so the
    # high-lane signal's id may equal a normal-lane one: signalId is the signal's identity.
    assert one.startswith("signals-") and len(many) == 6 and len(set(many[:5] + [one])) == 6
    normal = await entries(engine_redis, settings)
    assert [f"signals-{entry_id}" for entry_id, _ in normal] == [one, *many[:5]]
    assert all(list(fields) == ["data"] for _, fields in normal)
    assert orjson.loads(normal[0][1]["data"]) == sig(0)
    (high,) = await entries(engine_redis, settings, "high")
    assert f"signals-{high[0]}" == many[5] and orjson.loads(high[1]["data"])["priority"] == "high"


async def test_a_batch_with_one_invalid_signal_writes_nothing(
        engine_redis: Redis, make_settings: Callable[..., Settings]) -> None:
    settings = make_settings()
    publisher = signal_publisher(engine_redis, settings)
    bad = [sig(0), {"signalId": "sig_1", "companyId": "comp_1", "data": {}}, sig(2, signalType="Fax Received")]
    with pytest.raises(InvalidJob, match=r"signal 1: invalid signal: signalType: Field required"):
        await publisher.publish_signals(bad)
    with pytest.raises(InvalidJob, match="unknown signal type 'Fax Received'"):
        await publisher.publish_signal(bad[2])
    with pytest.raises(InvalidJob, match="priority"):
        await SignalPublisher(engine_redis, settings, queue=Q).publish_signal({**sig(3), "priority": "urgent"})
    assert await entries(engine_redis, settings) == []


async def test_large_batches_are_chunked(engine_redis: Redis, make_settings: Callable[..., Settings]) -> None:
    settings = make_settings()
    publisher = signal_publisher(engine_redis, settings, chunk_size=7)
    ids = await publisher.publish_signals([sig(n) for n in range(50)])
    assert len(ids) == 50
    assert [orjson.loads(f["data"])["signalId"] for _, f in await entries(engine_redis, settings)] == \
        [f"sig_{n}" for n in range(50)]


async def test_sync_publisher_from_threads_and_the_worker_processes_everything(
        engine_redis: Redis, make_settings: Callable[..., Settings]) -> None:
    settings = make_settings()
    publisher = sync_signal_publisher(settings)
    try:
        def produce(worker: int) -> list[str]:
            ids = [publisher.publish_signal(sig(worker * 100, company=f"comp_{worker}"))]
            return ids + publisher.publish_signals([sig(worker * 100 + n, company=f"comp_{worker}")
                                                    for n in range(1, 10)])

        results = await asyncio.gather(*(asyncio.to_thread(produce, w) for w in range(4)))
    finally:
        publisher.close()
    assert sum(len(r) for r in results) == 40
    await drain(settings, SignalProcessor(settings, engine_redis).handle)
    status = await QueueAdmin(engine_redis, settings).status(Q)
    assert status.counts["completed"] == 40 and status.dead == 0 and status.pending == 0
    store = Store(engine_redis, settings)
    for w in range(4):
        recent = await store.recent_signals(f"comp_{w}")
        assert sorted(e["signalId"] for e in recent) == sorted(f"sig_{w * 100 + n}" for n in range(10))


async def test_a_plain_sync_client_and_an_unvalidated_publisher(
        engine_redis: Redis, make_settings: Callable[..., Settings]) -> None:
    settings = make_settings()
    client = sync_client(settings.redis_connection_url(), decode_responses=False)  # bytes replies work too
    try:
        publisher = SyncSignalPublisher(client, settings, queue=Q)
        ids = publisher.publish_signals([{"n": n} for n in range(3)])
    finally:
        client.close()
    seen: list[tuple[str, int]] = []

    async def handler(ctx: JobContext) -> None:
        seen.append((ctx.id, ctx.data["n"]))

    await drain(settings, handler)
    assert seen == list(zip(ids, range(3)))


def test_publishers_refuse_a_queue_with_records(make_settings: Callable[..., Settings]) -> None:
    with pytest.raises(InvalidJob, match="keeps job records"):
        SignalPublisher(None, make_settings(), queue="research")  # type: ignore[arg-type]


async def test_the_workers_batch_handler_processes_plain_xadd_and_dead_letters_bad_signals(
        engine_redis: Redis, make_settings: Callable[..., Settings]) -> None:
    # What `tgjobs workers` runs on the signals queue: the processor's batch handler.
    from processors import build_handlers

    settings = make_settings()
    handler = build_handlers(settings, engine_redis)["signals"]
    assert getattr(handler, "handles_batches", False)
    lane = QueueKeys(settings.key_prefix, Q).lane("normal")
    for n in range(5):
        await engine_redis.xadd(lane, {"data": orjson.dumps(sig(n)).decode()})
    await engine_redis.xadd(lane, {"data": orjson.dumps(sig(5, signalType="Fax Received")).decode()})
    await engine_redis.xadd(lane, {"data": '{"signalId": "sig_6"}'})
    await engine_redis.xadd(lane, {"data": orjson.dumps(sig(1)).decode()})  # a duplicate: completes, counts once
    await drain(settings, handler)
    admin = QueueAdmin(engine_redis, settings)
    letters = await admin.dead_letters(Q)
    assert sorted(letter.error_type for letter in letters) == ["UnrecoverableError", "UnrecoverableError"]
    assert any("unknown signalType 'Fax Received'" in letter.error for letter in letters)
    assert any("invalid signal" in letter.error for letter in letters)
    status = await admin.status(Q)
    assert status.counts["completed"] == 6 and status.pending == 0
    recent = await Store(engine_redis, settings).recent_signals("comp_1")
    assert sorted(e["signalId"] for e in recent) == [f"sig_{n}" for n in range(5)]
