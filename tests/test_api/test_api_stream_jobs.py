"""The job endpoints on a stream-kept queue (signals, the fast path), black-box through
the API: a signal followed by id from waiting to completed or failed, the counts'
meaning, listings by state with a cursor, clean, removal, retry and replay."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import datetime
from typing import Any

import orjson
import pytest
from redis.asyncio import Redis
from test_api.conftest import BURST_TIMEOUT_S, SEED_BODIES, TOKENS, Api, StartApi

from config import Settings
from processors import build_handlers
from streams import QueueKeys, QueueWorker
from streams.keys import GROUP

Q = "signals"


def signal(n: int, **fields: Any) -> dict[str, Any]:
    return {"type": "signal", "data": {"signalId": f"sig_{n}", "signalType": "Email Open",
                                       "companyId": "comp_1", "data": {}, **fields}}


@pytest.fixture
async def signals_api(start_api: StartApi, make_settings: Callable[..., Settings]) -> Api:
    # Three completions and two failures kept, one attempt, so outcomes come fast.
    return await start_api(make_settings(api_tokens=TOKENS, signals={"keep_completed": 3, "keep_failed": 2,
                                                                     "attempts": 1}))


async def drain(settings: Settings, redis: Redis) -> None:
    """What `tgjobs workers` runs on the signals queue, until the queue is drained."""
    handler = build_handlers(settings, redis)[Q]
    await asyncio.wait_for(QueueWorker(settings, Q, handler).run(burst=True), BURST_TIMEOUT_S)


async def add(api: Api, *bodies: dict[str, Any]) -> list[str]:
    ids = []
    for body in bodies:
        status, created = await api.post("/api/jobs", body)
        assert status == 201, created
        ids.append(created["id"])
    return ids


async def test_a_signal_is_followed_by_id_from_waiting_to_completed(signals_api: Api, engine_redis: Redis) -> None:
    (job_id,) = await add(signals_api, SEED_BODIES["signal"])
    status, job = await signals_api.get(f"/api/jobs/{job_id}")
    assert status == 200, job
    assert job["status"] == "waiting" and job["queue"] == Q and job["attemptsMade"] == 0
    assert job["data"]["signalId"] == "sig_999" and job["maxAttempts"] == 1
    created = datetime.fromisoformat(job["createdAt"].replace("Z", "+00:00"))
    assert round(created.timestamp() * 1000) == int(job_id.split("-")[1])  # the entry id's time

    await drain(signals_api.settings, engine_redis)
    status, job = await signals_api.get(f"/api/jobs/{job_id}")
    assert status == 200, job
    assert job["status"] == "completed" and job["attemptsMade"] == 1
    assert job["returnvalue"] == {"signalId": "sig_999", "duplicate": False,
                                  "intentScore": job["returnvalue"]["intentScore"], "triggers": []}
    assert job["finishedAt"] >= job["processedAt"] >= job["createdAt"]
    assert job["data"]["signalId"] == "sig_999"


async def test_a_dead_entry_is_failed_with_its_reason_until_retention_drops_it(
        signals_api: Api, engine_redis: Redis) -> None:
    lane = QueueKeys(signals_api.settings.key_prefix, Q).lane("normal")
    raw = [await engine_redis.xadd(lane, {"data": "not json"}) for _ in range(3)]
    await drain(signals_api.settings, engine_redis)
    status, job = await signals_api.get(f"/api/jobs/{Q}-{raw[-1]}")
    assert status == 200, job
    assert job["status"] == "failed" and "not valid JSON" in job["failedReason"]
    assert job["data"] == "not json"
    # keep_failed = 2: the oldest failure is no longer kept, though its dead letter is.
    status, body = await signals_api.get(f"/api/jobs/{Q}-{raw[0]}")
    assert status == 404, body
    _, dead = await signals_api.get(f"/api/queues/{Q}/dead")
    assert len(dead["items"]) == 3


async def test_counts_mean_what_retention_keeps_and_totals_count_every_run(
        signals_api: Api, engine_redis: Redis) -> None:
    ids = await add(signals_api, *(signal(n) for n in range(5)))
    lane = QueueKeys(signals_api.settings.key_prefix, Q).lane("normal")
    await engine_redis.xadd(lane, {"data": "{}"})  # fails: not a signal
    await drain(signals_api.settings, engine_redis)
    _, overview = await signals_api.get("/api/jobs")
    counts = overview["queues"][Q]
    assert (counts["completed"], counts["completedTotal"]) == (3, 5)
    assert (counts["failed"], counts["failedTotal"]) == (1, 1)
    _, view = await signals_api.get(f"/api/queues/{Q}")
    assert (view["counts"]["completed"], view["counts"]["completedTotal"]) == (3, 5)
    assert (await signals_api.get(f"/api/jobs/{ids[0]}"))[0] == 404  # dropped by retention
    assert (await signals_api.get(f"/api/jobs/{ids[-1]}"))[1]["status"] == "completed"


async def list_all(api: Api, status: str, limit: int) -> list[dict[str, Any]]:
    jobs, cursor = [], None
    while True:
        path = f"/api/queues/{Q}?includeJobs=true&status={status}&limit={limit}"
        code, page = await api.get(path + (f"&cursor={cursor}" if cursor else ""))
        assert code == 200, page
        jobs += page["jobs"]
        cursor = page["nextCursor"]
        if cursor is None:
            return jobs


async def test_listings_page_by_cursor_in_every_state(signals_api: Api, engine_redis: Redis) -> None:
    ids = await add(signals_api, *(signal(n) for n in range(5)))
    waiting = await list_all(signals_api, "waiting", 2)
    assert [j["id"] for j in waiting] == ids[::-1]  # newest first
    assert all(j["status"] == "waiting" for j in waiting)

    await drain(signals_api.settings, engine_redis)
    completed = await list_all(signals_api, "completed", 2)
    assert [j["id"] for j in completed] == ids[:1:-1]  # the three kept, newest first
    assert completed[0]["returnvalue"]["signalId"] == "sig_4"
    assert await list_all(signals_api, "waiting", 2) == []


async def test_active_and_delayed_entries_are_listed_and_an_active_one_cannot_be_removed(
        signals_api: Api, engine_redis: Redis) -> None:
    settings = signals_api.settings
    k = QueueKeys(settings.key_prefix, Q)
    ids = await add(signals_api, signal(1), signal(2))
    await engine_redis.xgroup_create(k.lane("normal"), GROUP, id="0", mkstream=True)
    # A worker that read both entries and is still running them.
    await engine_redis.xreadgroup(GROUP, "someone", {k.lane("normal"): ">"}, count=2)
    # The first failed once and waits out its backoff.
    await engine_redis.hset(k.failures, f"2:{ids[0].split('-', 1)[1]}", "delayed:1:60000")
    # The second failed once too and was claimed again: running, not backing off.
    await engine_redis.hset(k.failures, f"2:{ids[1].split('-', 1)[1]}", "active:1:0")
    _, view = await signals_api.get(f"/api/queues/{Q}")
    assert (view["counts"]["active"], view["counts"]["delayed"]) == (1, 1)
    assert [j["id"] for j in await list_all(signals_api, "active", 1)] == [ids[1]]
    delayed = await list_all(signals_api, "delayed", 1)
    assert [j["id"] for j in delayed] == [ids[0]] and delayed[0]["attemptsMade"] == 1
    assert delayed[0]["delayedUntil"] > delayed[0]["createdAt"]
    status, body = await signals_api.delete(f"/api/jobs/{ids[1]}")
    assert status == 409 and "active" in body["message"]
    status, _ = await signals_api.delete(f"/api/jobs/{ids[0]}")  # a delayed one can go
    assert status == 200
    assert (await signals_api.get(f"/api/jobs/{ids[0]}"))[0] == 404
    assert not await engine_redis.hexists(k.failures, f"2:{ids[0].split('-', 1)[1]}")  # its retry state went too


async def test_clean_trims_the_kept_outcomes_and_bulk_remove_takes_ids(
        signals_api: Api, engine_redis: Redis) -> None:
    done = await add(signals_api, *(signal(n) for n in range(3)))
    await drain(signals_api.settings, engine_redis)
    status, cleaned = await signals_api.post(f"/api/queues/{Q}", {"action": "clean",
                                                                  "options": {"grace": 0, "type": "completed"}})
    assert status == 200, cleaned
    assert sorted(cleaned["jobIds"]) == sorted(done) and cleaned["removed"] == 3
    _, view = await signals_api.get(f"/api/queues/{Q}")
    assert (view["counts"]["completed"], view["counts"]["completedTotal"]) == (0, 3)

    waiting = await add(signals_api, signal(10), signal(11))
    status, result = await signals_api.delete(f"/api/queues/{Q}?jobIds={waiting[0]},{Q}-1-0")
    assert status == 200, result
    assert result["removed"] == [waiting[0]] and result["notFound"] == [f"{Q}-1-0"]
    assert [j["id"] for j in await list_all(signals_api, "waiting", 10)] == [waiting[1]]


async def test_a_failed_job_is_retried_or_replayed_once(signals_api: Api, engine_redis: Redis) -> None:
    k = QueueKeys(signals_api.settings.key_prefix, Q)
    bad = [await engine_redis.xadd(k.lane("high"), {"data": orjson.dumps({"signalId": f"s{n}"}).decode()})
           for n in range(2)]
    await drain(signals_api.settings, engine_redis)
    first, second = (f"{Q}-{entry}" for entry in bad)

    status, retried = await signals_api.delete(f"/api/jobs/{first}?action=retry")
    assert status == 200, retried
    assert retried["status"] == "waiting" and retried["id"] != first  # a new entry: a new id
    _, job = await signals_api.get(f"/api/jobs/{retried['id']}")
    assert job["status"] == "waiting" and job["priority"] == "high" and job["data"] == {"signalId": "s0"}
    assert (await signals_api.get(f"/api/jobs/{first}"))[0] == 404
    status, body = await signals_api.delete(f"/api/jobs/{retried['id']}?action=retry")
    assert status == 409 and "only failed jobs" in body["message"]

    _, dead = await signals_api.get(f"/api/queues/{Q}/dead")
    assert [d["jobId"] for d in dead["items"]] == [second]  # the retried job's letter went with it
    status, replayed = await signals_api.post(f"/api/queues/{Q}/dead", {"action": "replay"})
    assert status == 200 and len(replayed["replayed"]) == 1, replayed
    _, again = await signals_api.post(f"/api/queues/{Q}/dead", {"action": "replay"})
    assert again["replayed"] == []
    assert (await signals_api.get(f"/api/jobs/{replayed['replayed'][0]}"))[1]["status"] == "waiting"
    _, view = await signals_api.get(f"/api/queues/{Q}")
    assert view["counts"]["failed"] == 0 and view["counts"]["waiting"] == 2
