"""The signals processor against real Redis: what one signal records, deduplication under
concurrent redelivery, the decayed intent score, and each trigger firing once per cooldown."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import redis.asyncio as aioredis
from processor_support import jobs, make_ctx, signal
from redis_server import client as own_client

from config import Settings
from processors.periods import local_day, now_ms
from processors.signals import SignalProcessor
from processors.record_keys import key_part
from processors.store import Store
from streams import UnrecoverableError

HOUR = 3600.0


def iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat()


@pytest.fixture
def settings(make_settings: Callable[..., Settings]) -> Settings:
    return make_settings(intent_threshold=25, intent_half_life="7d")


async def test_one_signal_is_recorded_and_described(engine_redis: aioredis.Redis, settings: Settings) -> None:
    processor = SignalProcessor(settings, engine_redis)
    store = Store(engine_redis, settings)
    (result,) = await processor.process_signals([signal("comp_1", "Email Open", "sig_1", contactId="c_1")])
    assert result.as_dict() == {"signalId": "sig_1", "duplicate": False, "intentScore": 1.0, "triggers": []}

    (entry,) = await store.recent_signals("comp_1")
    assert entry["signalId"] == "sig_1" and entry["signalType"] == "Email Open"
    assert entry["data"] == {"contactId": "c_1"}
    today = local_day(now_ms(), settings.zone)
    (day,) = await store.days("comp_1", [today])
    assert day.counts == {"Email Open": 1}
    assert day.intent is not None and day.intent[0] == pytest.approx(1.0)
    assert await store.engaged_contacts("comp_1", [today]) == {"c_1"}
    assert await store.intent_score("comp_1") == pytest.approx(1.0, abs=1e-4)


async def test_the_job_handler_returns_the_seed_shape_and_rejects_bad_input(
        engine_redis: aioredis.Redis, settings: Settings) -> None:
    processor = SignalProcessor(settings, engine_redis)
    data = {"signalId": "sig_9", "signalType": "Website Visit", "companyId": "comp_1",
            "data": {"timestamp": "2024-01-15T10:30:00Z"}}
    result = await processor.handle(make_ctx(engine_redis, settings, "signals", data))
    assert result == {"signalId": "sig_9", "duplicate": False, "intentScore": pytest.approx(result["intentScore"]),
                      "triggers": []}
    with pytest.raises(UnrecoverableError, match="unknown signalType 'Fax Received'"):
        await processor.handle(make_ctx(engine_redis, settings, "signals", {**data, "signalType": "Fax Received"}))
    with pytest.raises(UnrecoverableError, match="invalid signal"):
        await processor.handle(make_ctx(engine_redis, settings, "signals", {"signalId": "x"}))


async def test_a_batch_reports_unknown_types_per_item_and_records_the_rest(
        engine_redis: aioredis.Redis, settings: Settings) -> None:
    processor = SignalProcessor(settings, engine_redis)
    results = await processor.process_signals([
        signal("comp_1", "Email Open"), signal("comp_1", "Carrier Pigeon"), signal("comp_2", "Demo Request")])
    assert [r.error is None for r in results] == [True, False, True]
    assert "Carrier Pigeon" in (results[1].error or "") and results[1].intent_score is None
    assert results[2].intent_score == pytest.approx(10.0)
    assert len(await Store(engine_redis, settings).recent_signals("comp_1")) == 1


async def test_duplicates_under_concurrent_redelivery_count_once(
        redis_url: str, engine_redis: aioredis.Redis, settings: Settings) -> None:
    # Three workers (own clients) see the same two signals many times at once.
    clients = [own_client(redis_url, decode_responses=True) for _ in range(3)]
    try:
        processors = [SignalProcessor(settings, client) for client in clients]
        batch = [signal("comp_1", "Demo Request", "sig_a", contactId="c_1"),
                 signal("comp_1", "Email Click", "sig_b")]
        runs = [processors[i % 3].process_signals(batch) for i in range(30)]
        outcomes = await asyncio.gather(*runs)
    finally:
        for client in clients:
            await client.aclose()
    firsts = [r for results in outcomes for r in results if not r.duplicate]
    assert sorted(r.signal_id for r in firsts) == ["sig_a", "sig_b"]
    assert sum(r.duplicate for results in outcomes for r in results) == 58
    store = Store(engine_redis, settings)
    (day,) = await store.days("comp_1", [local_day(now_ms(), settings.zone)])
    assert day.counts == {"Demo Request": 1, "Email Click": 1}
    assert len(await store.recent_signals("comp_1")) == 2
    assert await store.intent_score("comp_1") == pytest.approx(12.0, abs=1e-3)


async def test_intent_decays_by_half_life_and_history_is_capped(
        engine_redis: aioredis.Redis, make_settings: Callable[..., Settings]) -> None:
    settings = make_settings(intent_half_life="1h", signal_history_max=3)
    processor = SignalProcessor(settings, engine_redis)
    hour_ago = datetime.now(UTC) - timedelta(hours=1)
    (old,) = await processor.process_signals([signal("comp_1", "Demo Request", timestamp=iso(hour_ago))])
    assert old.intent_score == pytest.approx(5.0, rel=1e-3)  # weight 10, one half-life old
    results = await processor.process_signals([signal("comp_1", "Email Open") for _ in range(4)])
    assert results[-1].intent_score == pytest.approx(9.0, rel=1e-3)
    assert len(await Store(engine_redis, settings).recent_signals("comp_1", 100)) == 3


async def test_intent_crossing_enqueues_research_once_under_concurrency(
        redis_url: str, engine_redis: aioredis.Redis, make_settings: Callable[..., Settings]) -> None:
    settings = make_settings(intent_threshold=25)
    store = Store(engine_redis, settings)
    await store.save_profile("comp_1", companyName="Acme Corp", domain="acme-corp.com")
    clients = [own_client(redis_url, decode_responses=True) for _ in range(4)]
    try:
        # Ten Demo Requests (weight 10) at once from four workers: the score crosses 25 once.
        runs = [SignalProcessor(settings, clients[i % 4]).process_signals([signal("comp_1", "Demo Request")])
                for i in range(10)]
        outcomes = [results[0] for results in await asyncio.gather(*runs)]
    finally:
        for client in clients:
            await client.aclose()
    fired = [r for r in outcomes if r.triggers]
    assert len(fired) == 1
    (trigger,) = fired[0].as_dict()["triggers"]
    assert trigger["rule"] == "intent-threshold" and trigger["queue"] == "research"
    (job,) = await jobs(engine_redis, settings, "research")
    assert job.id == trigger["jobId"] and job.name == "company-research"  # named as the API names it
    assert job.data == {"companyId": "comp_1", "companyName": "Acme Corp", "domain": "acme-corp.com"}


async def test_research_trigger_waits_out_its_cooldown(
        engine_redis: aioredis.Redis, make_settings: Callable[..., Settings]) -> None:
    # A half-life of 20 ms lets the score fall below the threshold between signals, so
    # each Demo Request crosses it again; only the cooldown holds the trigger back.
    settings = make_settings(intent_threshold=5, intent_half_life="20ms", intent_trigger_cooldown="600ms")
    processor = SignalProcessor(settings, engine_redis)

    async def crossing() -> list[dict[str, Any]]:
        (result,) = await processor.process_signals([signal("comp_1", "Demo Request")])
        return result.as_dict()["triggers"]

    assert len(await crossing()) == 1
    await asyncio.sleep(0.2)
    assert await crossing() == []  # crossed again, within the cooldown
    await asyncio.sleep(0.6)
    assert len(await crossing()) == 1
    assert len(await jobs(engine_redis, settings, "research")) == 2


async def test_job_change_enqueues_enrichment_once_per_contact_per_cooldown(
        engine_redis: aioredis.Redis, make_settings: Callable[..., Settings]) -> None:
    settings = make_settings(job_change_cooldown="1h")
    processor = SignalProcessor(settings, engine_redis)
    first = signal("comp_1", "Job Change", "sig_jc1", contactId="c_7", email="jane@acme-corp.com",
                   linkedinUrl="not a url")
    results = await processor.process_signals([
        first,
        signal("comp_1", "Job Change", "sig_jc2", contactId="c_7"),  # same contact: cooling down
        signal("comp_1", "Job Change", "sig_jc3", contactId="c_8"),
        signal("comp_1", "Job Change", "sig_jc4"),  # no contact: nothing to enrich
    ])
    assert [len(r.triggers) for r in results] == [1, 0, 1, 0]
    enrichment = await jobs(engine_redis, settings, "enrichment")
    assert sorted(job.data["contactId"] for job in enrichment) == ["c_7", "c_8"]
    c7 = next(job for job in enrichment if job.data["contactId"] == "c_7")
    assert c7.data == {"contactId": "c_7", "companyId": "comp_1", "email": "jane@acme-corp.com"}

    # Redelivered: a duplicate, reporting the same job, adding none.
    (again,) = await processor.process_signals([first])
    assert again.duplicate and again.as_dict()["triggers"] == results[0].as_dict()["triggers"]
    assert len(await jobs(engine_redis, settings, "enrichment")) == 2


async def test_triggers_lost_to_a_crash_are_enqueued_by_the_redelivery(
        engine_redis: aioredis.Redis, settings: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    # The script recorded the signal and claimed the trigger, then the worker died before
    # enqueueing: the redelivered signal is a duplicate, and still gets its job enqueued.
    processor = SignalProcessor(settings, engine_redis)
    real_add_many = processor.producer.add_many

    async def crash(*args: Any, **kwargs: Any) -> Any:
        raise ConnectionError("worker died")

    monkeypatch.setattr(processor.producer, "add_many", crash)
    jc = signal("comp_1", "Job Change", "sig_jc", contactId="c_1")
    with pytest.raises(ConnectionError):
        await processor.process_signals([jc])
    assert await jobs(engine_redis, settings, "enrichment") == []
    monkeypatch.setattr(processor.producer, "add_many", real_add_many)
    (result,) = await processor.process_signals([jc])
    assert result.duplicate and len(result.triggers) == 1
    (job,) = await jobs(engine_redis, settings, "enrichment")
    assert job.id == result.triggers[0].job_id


async def test_old_event_times_count_on_their_own_local_day(
        engine_redis: aioredis.Redis, make_settings: Callable[..., Settings]) -> None:
    settings = make_settings(timezone="Asia/Tokyo")
    processor = SignalProcessor(settings, engine_redis)
    # 20:00 UTC is 05:00 the next day in Tokyo.
    moment = (datetime.now(UTC) - timedelta(days=3)).replace(hour=20, minute=0, second=0, microsecond=0)
    await processor.process_signals([signal("comp_1", "Hiring", timestamp=iso(moment))])
    tokyo_day = moment.astimezone(settings.zone).date()
    (day, before) = await Store(engine_redis, settings).days("comp_1", [tokyo_day, tokyo_day - timedelta(days=1)])
    assert day.counts == {"Hiring": 1} and before.counts == {}


async def test_company_ids_cannot_break_the_hash_tag(engine_redis: aioredis.Redis, settings: Settings) -> None:
    hostile = "evil}{tg:research}:x"
    keys = Store(engine_redis, settings).company(hostile)
    assert keys.tag.count("{") == 1 and keys.tag.count("}") == 1
    assert key_part(hostile).startswith("~") and key_part("comp_123") == "comp_123"
    (result,) = await SignalProcessor(settings, engine_redis).process_signals([signal(hostile, "Funding")])
    assert result.intent_score == pytest.approx(5.0)
    assert await engine_redis.exists(f"{{{settings.key_prefix}:research}}:x") == 0
