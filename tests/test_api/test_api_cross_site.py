"""Cross-site writes and DNS rebinding (issue 13, finding 5), in open mode (no token, the
`make run` default) and with tokens: a changing request must be JSON unless it carries a
token, a foreign Origin is 403 unless listed in API_CORS_ORIGINS, and a Host that is not
loopback nor listed in API_ALLOWED_HOSTS is 421 (400 without one). Nothing changes."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest
from conftest import SEED_BODIES, Api, StartApi

from config import Settings

EVIL = "https://evil.example"
APP = "https://app.example.com"


@pytest.fixture
async def open_api(start_api: StartApi, make_settings: Callable[..., Settings]) -> Api:
    api = await start_api(make_settings(api_cors_origins=APP, api_allowed_hosts="jobs.internal.example"))
    api.token = None
    return api


async def paused(api: Api) -> bool:
    status, queue = await api.get("/api/queues/research")
    assert status == 200, queue
    return bool(queue["paused"])


@pytest.mark.parametrize("content_type", ["text/plain", "application/x-www-form-urlencoded", "multipart/form-data"])
async def test_open_mode_refuses_a_simple_cross_site_post(open_api: Api, content_type: str) -> None:
    status, body = await open_api.post("/api/queues/research", data='{"action": "pause"}',
                                       headers={"Content-Type": content_type})
    assert (status, body["error"]) == (415, "unsupported_media_type")
    assert "application/json" in body["message"]
    status, body = await open_api.post("/api/jobs", data='{"type": "research", "data": {"companyId": "c", '
                                       '"companyName": "A"}}', headers={"Content-Type": content_type})
    assert status == 415
    assert not await paused(open_api)
    assert (await open_api.get("/api/jobs"))[1]["totalJobs"] == 0


async def test_a_foreign_origin_is_refused_and_a_listed_one_gets_cors(open_api: Api) -> None:
    status, body = await open_api.post("/api/queues/research", {"action": "pause"}, headers={"Origin": EVIL})
    assert (status, body["error"]) == (403, "forbidden") and "API_CORS_ORIGINS" in body["message"]
    assert (await open_api.get("/api/jobs", headers={"Origin": "null"}))[0] == 403
    assert not await paused(open_api)

    own = f"http://{open_api.client.host}:{open_api.client.port}"
    assert (await open_api.post("/api/queues/research", {"action": "pause"}, headers={"Origin": own}))[0] == 200
    async with open_api.client.post("/api/queues/research", json={"action": "resume"},
                                    headers={"Origin": APP}) as response:
        assert response.status == 200
        assert response.headers["Access-Control-Allow-Origin"] == APP
    async with open_api.client.options("/api/queues/research", headers={
            "Origin": APP, "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "content-type"}) as preflight:
        assert preflight.status == 204
        assert preflight.headers["Access-Control-Allow-Origin"] == APP
        assert "POST" in preflight.headers["Access-Control-Allow-Methods"]
        assert "Content-Type" in preflight.headers["Access-Control-Allow-Headers"]
    async with open_api.client.options("/api/queues/research", headers={
            "Origin": EVIL, "Access-Control-Request-Method": "POST"}) as preflight:
        assert preflight.status == 403 and "Access-Control-Allow-Origin" not in preflight.headers
    assert not await paused(open_api)


@pytest.mark.parametrize("host, expected", [
    ("evil.example", 421), ("evil.example:3000", 421), ("10.0.0.7:3000", 421), ("localhost.evil.example", 421),
    ("localhost:3000", 200), ("127.0.0.1", 200), ("[::1]:3000", 200), ("app.localhost:3000", 200),
    ("jobs.internal.example:8080", 200), ("JOBS.INTERNAL.EXAMPLE", 200),
])
async def test_only_loopback_or_listed_hosts_are_answered(open_api: Api, host: str, expected: int) -> None:
    status, body = await open_api.post("/api/queues/research", {"action": "pause"}, headers={"Host": host})
    assert status == expected, body
    if expected == 421:
        assert body["error"] == "misdirected_request" and "API_ALLOWED_HOSTS" in body["message"]
        assert not await paused(open_api)
    # Probes send the pod's address as Host: health and readiness answer any.
    assert (await open_api.get("/healthz", headers={"Host": host}))[0] == 200


async def test_a_request_without_host_is_400(open_api: Api) -> None:
    reader, writer = await asyncio.open_connection(open_api.client.host, open_api.client.port)
    writer.write(b"GET /api/jobs HTTP/1.0\r\n\r\n")  # HTTP/1.0 may omit Host; aiohttp's client never does
    answer = await reader.read()
    writer.close()
    assert answer.startswith(b"HTTP/1.0 400") and b'"bad_request"' in answer


async def test_with_a_token_the_same_rules_hold_and_the_body_type_is_free(api: Api) -> None:
    assert (await api.post("/api/queues/research", {"action": "pause"}, headers={"Origin": EVIL}))[0] == 403
    assert (await api.get("/api/jobs", headers={"Host": "evil.example"}))[0] == 421
    # Without a token: 415 before the 401, nothing to learn either way.
    assert (await api.post("/api/jobs", data="{}", token=None, headers={"Content-Type": "text/plain"}))[0] == 415
    # A bearer token is never sent cross-site without a preflight: any body type is parsed.
    status, _ = await api.post("/api/jobs", data=str(SEED_BODIES["research"]).replace("'", '"'),
                               headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert status == 201
