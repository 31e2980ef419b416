"""Every error path of the API: 400, 404, 405, 409, 413, 422 with each failing field,
503 while Redis is away or out of memory (and recovery after), and a 500 that carries a
request id and no traceback. Bad input never changes anything."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import redis.asyncio as aioredis
from conftest import FAST_RESEARCH, SEED_BODIES, TOKENS, VIEWER_TOKEN, Api, StartApi, fail, run_jobs
from redis_server import RedisServerFactory

from config import Settings
from streams import JobContext, QueueKeys, QueueWorker

FILL_BYTES = 4 * 1024 * 1024
FILL_CHUNK = 64 * 1024
OOM_LIMIT = "2mb"


def details(body: dict[str, Any]) -> list[tuple[str, list[Any]]]:
    return [(d["location"], d["path"]) for d in body["details"]]


async def research_count(api: Api) -> int:
    _, body = await api.get("/api/jobs")
    return sum(body["queues"]["research"][k] for k in ("waiting", "active", "delayed", "completed", "failed"))


# -- 400 ----------------------------------------------------------------------------

@pytest.mark.parametrize("raw", ['{"type": "research", "data": ', "not json", "   "])
async def test_malformed_or_empty_json_is_400(api: Api, raw: str) -> None:
    status, body = await api.call("POST", "/api/jobs", data=raw, headers={"Content-Type": "application/json"})
    assert status == 400 and body["error"] == "bad_request"
    assert await research_count(api) == 0


@pytest.mark.parametrize("method, path, kwargs", [
    ("POST", "/api/queues/research", {"json": {"action": "explode"}}),
    ("POST", "/api/queues/research/dead", {"json": {"action": "resurrect"}}),
    ("DELETE", "/api/jobs/research-01ABC?action=cancel", {}),
])
async def test_unknown_action_is_400(api: Api, method: str, path: str, kwargs: dict[str, Any]) -> None:
    status, body = await api.call(method, path, **kwargs)
    assert status == 400 and "unknown action" in body["message"]


# -- 422 ----------------------------------------------------------------------------

async def test_every_failing_field_is_listed_with_its_path(api: Api) -> None:
    bad = {"type": "enrichment", "data": {"contactId": " ", "email": "john-at-acme", "linkedinUrl": "not a url",
                                          "priority": "urgent", "nickname": "JD"}}
    status, body = await api.post("/api/jobs", bad)
    assert status == 422 and body["error"] == "invalid"
    assert sorted(details(body)) == sorted([
        ("body", ["data", "contactId"]), ("body", ["data", "companyId"]), ("body", ["data", "linkedinUrl"]),
        ("body", ["data", "email"]), ("body", ["data", "priority"]), ("body", ["data", "nickname"])])
    assert all(d["message"] for d in body["details"])
    assert await research_count(api) == 0


@pytest.mark.parametrize("body, where", [
    ([1, 2], []),
    ({"data": {}}, ["type"]),
    ({"type": 7, "data": {}}, ["type"]),
    ({"type": "report", "data": "weekly"}, ["data"]),
    ({"type": "report", "data": {"companyId": "c", "reportType": "daily", "userId": "u"}}, ["data", "reportType"]),
    ({"type": "signal", "data": {**SEED_BODIES["signal"]["data"], "signalType": "Coffee Chat"}}, ["data", "signalType"]),
    ({"type": "research", "data": {"companyId": "c", "companyName": "A"}, "opts": {}}, ["opts"]),
])
async def test_invalid_bodies_are_422(api: Api, body: Any, where: list[Any]) -> None:
    status, answer = await api.post("/api/jobs", body)
    assert status == 422, answer
    assert ("body", where) in details(answer)


@pytest.mark.parametrize("path, where", [
    ("/api/queues/research?limit=0", ["limit"]),
    ("/api/queues/research?includeJobs=true&limit=1001", ["limit"]),
    ("/api/queues/research?includeJobs=true&status=lost", ["status"]),
    ("/api/queues/research?includeJobs=true&cursor=bogus", ["cursor"]),
    ("/api/queues/research?includeJobs=true&cursor=nowhere:1:0", ["cursor"]),
    ("/api/queues/research?includJobs=true", ["includJobs"]),
    ("/api/queues/research/dead?cursor=abc", ["cursor"]),
    ("/api/audit?limit=5000", ["limit"]),
])
async def test_invalid_query_is_422(api: Api, path: str, where: list[Any]) -> None:
    status, body = await api.get(path)
    assert status == 422, body
    assert ("query", where) in details(body)


@pytest.mark.parametrize("method, path, body, where", [
    ("POST", "/api/queues/research", {"action": "clean", "options": {"grace": -1, "type": "active"}},
     [["options", "grace"], ["options", "type"]]),
    ("POST", "/api/queues/research", {}, [["action"]]),
    ("POST", "/api/queues/research/dead", {"action": "replay", "ids": ["enrichment-01ABC"]}, [["ids", 0]]),
    ("POST", "/api/queues/research/dead", {"action": "purge", "ids": "all"}, [["ids"]]),
    ("DELETE", "/api/queues/research?jobIds=research-1,signals-2", None, [["jobIds", 1]]),
    ("DELETE", "/api/queues/research?status=failed&jobIds=research-1", None, [[]]),
    ("DELETE", "/api/queues/research", None, [[]]),
])
async def test_invalid_management_requests_are_422(api: Api, method: str, path: str, body: Any,
                                                   where: list[list[Any]]) -> None:
    status, answer = await api.call(method, path, json=body) if body is not None else await api.call(method, path)
    assert status == 422, answer
    assert [p for _, p in details(answer)] == where


async def test_a_malformed_idempotency_key_is_422(api: Api) -> None:
    status, body = await api.post("/api/jobs", SEED_BODIES["research"], headers={"Idempotency-Key": "a b"})
    assert status == 422 and details(body) == [("header", ["Idempotency-Key"])]


# -- 404, 405 ---------------------------------------------------------------------------

@pytest.mark.parametrize("method, path, body", [
    ("POST", "/api/jobs", {"type": "newsletter", "data": {}}),
    ("GET", "/api/jobs/research-01NOSUCHJOB", None),
    ("GET", "/api/jobs/job_12345", None),  # the seed's example id: not an id this system gives out
    ("GET", "/api/jobs/mail-01ABC", None),  # a well-formed id of a queue that is not configured
    ("DELETE", "/api/jobs/research-01NOSUCHJOB?action=remove", None),
    ("DELETE", "/api/jobs/research-01NOSUCHJOB?action=retry", None),
    ("GET", "/api/queues/mail", None),
    ("POST", "/api/queues/mail", {"action": "pause"}),
    ("DELETE", "/api/queues/mail?status=failed", None),
    ("GET", "/api/queues/mail/dead", None),
    ("POST", "/api/queues/mail/dead", {"action": "purge"}),
    ("GET", "/api/nowhere", None),
    ("GET", "/static/missing.js", None),  # the dashboard's files: a missing one is the same JSON 404
    ("GET", "/static/", None),
    ("GET", "/static/index.html", None),  # the page itself is served at / only
])
async def test_unknown_type_queue_job_or_path_is_404(api: Api, method: str, path: str, body: Any) -> None:
    status, answer = await api.call(method, path, **({"json": body} if body is not None else {}))
    assert status == 404 and answer["error"] == "not_found", answer


async def test_the_dashboard_files_are_served_without_a_token(api: Api) -> None:
    async with api.client.get("/static/dashboard.js") as response:
        assert response.status == 200 and response.content_type.endswith("javascript")


async def test_wrong_method_is_405_with_allow(api: Api) -> None:
    async with api.client.put("/api/jobs", headers={"Authorization": f"Bearer {api.token}"}) as response:
        assert response.status == 405
        assert set(response.headers["Allow"].split(",")) >= {"GET", "POST"}
        assert (await response.json())["error"] == "method_not_allowed"


# -- 409 --------------------------------------------------------------------------------

async def test_removing_an_active_job_or_retrying_a_waiting_one_is_409(api: Api) -> None:
    waiting = await api.add()
    status, body = await api.delete(f"/api/jobs/{waiting}?action=retry")
    assert status == 409 and "only failed jobs" in body["message"]

    started, release = asyncio.Event(), asyncio.Event()

    async def hold(ctx: JobContext) -> None:
        started.set()
        await release.wait()

    worker = asyncio.create_task(QueueWorker(api.settings, "research", hold).run(burst=True))
    await asyncio.wait_for(started.wait(), 10)
    status, body = await api.delete(f"/api/jobs/{waiting}?action=remove")
    assert status == 409 and body["error"] == "conflict"
    release.set()
    await asyncio.wait_for(worker, 10)
    assert (await api.get(f"/api/jobs/{waiting}"))[1]["status"] == "completed"


# -- 413 --------------------------------------------------------------------------------

async def test_a_body_over_the_limit_is_413(start_api: StartApi, make_settings: Callable[..., Settings]) -> None:
    api = await start_api(make_settings(api_tokens=TOKENS, api_max_body=1024))
    big = {"type": "research", "data": {"companyId": "c", "companyName": "x" * 2000}}
    status, body = await api.post("/api/jobs", big)
    assert status == 413 and body["error"] == "payload_too_large"
    assert await research_count(api) == 0


# -- 503 and recovery ---------------------------------------------------------------------

async def test_redis_down_is_503_then_recovers_by_itself(start_api: StartApi, key_prefix: str,
                                                         redis_server_factory: RedisServerFactory) -> None:
    server = redis_server_factory(appendonly=False)
    api = await start_api(Settings(redis_url=server.url, key_prefix=key_prefix, api_tokens=TOKENS))
    job_id = await api.add()

    server.kill()
    for method, path, body in [("POST", "/api/jobs", SEED_BODIES["research"]), ("GET", "/api/jobs", None),
                               ("GET", f"/api/jobs/{job_id}", None), ("GET", "/api/queues/research", None),
                               ("POST", "/api/queues/research", {"action": "pause"}), ("GET", "/api/streams", None),
                               ("GET", "/api/queues/research/dead", None), ("GET", "/api/audit", None)]:
        status, answer = await api.call(method, path, **({"json": body} if body else {}))
        assert (status, answer["error"]) == (503, "unavailable"), (method, path, answer)
    async with api.client.get("/api/jobs", headers={"Authorization": f"Bearer {api.token}"}) as response:
        assert response.headers["Retry-After"] == "1"
    assert (await api.get("/healthz")) == (200, {"status": "ok"})
    status, ready = await api.get("/readyz")
    assert (status, ready["status"], ready["scripts"]) == (503, "unavailable", False)

    server.start()  # same port, empty: no data, no scripts
    assert (await api.get("/readyz"))[1] == {"status": "ready", "redis": "ok", "scripts": True}
    assert (await api.get("/api/jobs"))[0] == 200
    await api.add()


async def test_readyz_tells_anyone_a_reason_word_and_details_need_a_token(
        start_api: StartApi, key_prefix: str, redis_server_factory: RedisServerFactory) -> None:
    server = redis_server_factory(appendonly=False)
    api = await start_api(Settings(redis_url=server.url, key_prefix=key_prefix, api_tokens=TOKENS))
    assert await api.get("/readyz", token=None) == (200, {"status": "ready"})
    server.kill()
    anonymous = {"status": "unavailable", "reason": "redis_unreachable"}
    assert await api.get("/readyz", token=None) == (503, anonymous)
    assert await api.get("/readyz", token="not-a-token-of-this-server") == (503, anonymous)
    status, detailed = await api.get("/readyz", token=VIEWER_TOKEN)
    assert (status, detailed["reason"], detailed["scripts"]) == (503, "redis_unreachable", False)
    assert detailed["redis"].startswith("ConnectionError") and str(server.port) in detailed["redis"]


async def test_redis_out_of_memory_is_503_and_adds_nothing(start_api: StartApi, key_prefix: str,
                                                           redis_server_factory: RedisServerFactory) -> None:
    server = redis_server_factory(appendonly=False)
    api = await start_api(Settings(redis_url=server.url, key_prefix=key_prefix, api_tokens=TOKENS))
    await api.add()
    client = aioredis.Redis.from_url(server.url)
    try:
        async with client.pipeline(transaction=False) as pipe:
            for n in range(FILL_BYTES // FILL_CHUNK):
                pipe.set(f"filler:{n}", b"x" * FILL_CHUNK)
            await pipe.execute()
        await client.config_set("maxmemory-policy", "noeviction")
        await client.config_set("maxmemory", OOM_LIMIT)

        for body in SEED_BODIES.values():
            status, answer = await api.post("/api/jobs", body)
            assert status == 503 and "out of memory" in answer["message"], answer
        status, _ = await api.post("/api/queues/research", {"action": "pause"})
        assert status == 503
        assert await research_count(api) == 1  # reads still work; nothing was added
        assert (await api.get("/api/queues/research"))[1]["paused"] is False

        await client.config_set("maxmemory", "0")
        await api.add()
        assert await research_count(api) == 2
    finally:
        await client.aclose()


# -- 500 --------------------------------------------------------------------------------

class _Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.fixture
def error_log() -> Iterator[_Records]:
    handler, logger = _Records(), logging.getLogger("api.errors")
    logger.addHandler(handler)
    try:
        yield handler
    finally:
        logger.removeHandler(handler)


async def test_an_unexpected_error_is_500_with_a_request_id_and_no_traceback(
        api: Api, engine_redis: aioredis.Redis, error_log: _Records) -> None:
    job_id = "research-01CORRUPTRECORD"
    await engine_redis.set(QueueKeys(api.settings.key_prefix, "research").job(job_id), "not a hash")
    async with api.client.get(f"/api/jobs/{job_id}", headers={"Authorization": f"Bearer {api.token}"}) as response:
        body = await response.json()
        assert response.status == 500
        assert set(body) == {"error", "message", "requestId"} and body["error"] == "internal_error"
        assert response.headers["X-Request-Id"] == body["requestId"]
        assert "Traceback" not in await response.text() and "WRONGTYPE" not in await response.text()
    (record,) = [r for r in error_log.records if body["requestId"] in r.getMessage()]
    assert record.exc_info is not None  # the traceback went to the log


async def test_a_sane_caller_request_id_is_echoed(api: Api) -> None:
    for sent, echoed in [("trace-42.a_b", True), ("bad id\u00e9", False), ("x" * 65, False)]:
        async with api.client.get("/api/nowhere", headers={"X-Request-Id": sent}) as response:
            body = await response.json()
            assert (body["requestId"] == sent) is echoed
            assert response.headers["X-Request-Id"] == body["requestId"]


# -- idempotency --------------------------------------------------------------------------

async def test_an_idempotency_key_adds_a_job_once(api: Api) -> None:
    headers = {"Idempotency-Key": "crm-sync:comp_123:2024-01-15"}
    status, first = await api.post("/api/jobs", SEED_BODIES["research"], headers=headers)
    assert status == 201
    status, again = await api.post("/api/jobs", SEED_BODIES["research"], headers=headers)
    # createdAt: the API's clock in the first answer, the record's (Redis's clock) after.
    assert status == 200 and (again["id"], again["queue"], again["status"]) == (first["id"], "research", "waiting")
    await run_jobs(api.settings, fail)
    status, later = await api.post("/api/jobs", SEED_BODIES["research"], headers=headers)
    assert (status, later["id"], later["status"]) == (200, first["id"], "failed")
    assert await research_count(api) == 1


async def test_research_overrides_used_by_these_tests_are_the_fast_ones(api: Api) -> None:
    policy = api.settings.policy("research")
    assert (policy.rate_limit, policy.attempts) == (None, FAST_RESEARCH["attempts"])
