"""GET /api/events, the server-sent events of every queue: the figures at connect, a job
event for each entry added to an events stream, the token it needs, and the server's
side ending when the client goes away or the app shuts down."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any

import aiohttp
import orjson
import pytest
from conftest import ADMIN_TOKEN, VIEWER_TOKEN, Api
from redis.asyncio import RedisCluster

from api.routes import events
from api.state import EVENTS

WAIT_S = 10.0


class EventReader:
    """Parses a text/event-stream answer into (event, id, data) tuples."""

    def __init__(self, response: aiohttp.ClientResponse) -> None:
        self.response = response
        self.comments: list[str] = []

    async def next(self) -> tuple[str, str | None, Any]:
        event, event_id, data = "message", None, []
        while True:
            raw = await asyncio.wait_for(self.response.content.readline(), WAIT_S)
            if not raw:
                raise EOFError("the stream ended")
            line = raw.decode().rstrip("\n")
            if not line:
                if data:
                    return event, event_id, orjson.loads("\n".join(data))
                continue
            if line.startswith(":"):
                self.comments.append(line)
                continue
            name, _, value = line.partition(": ")
            if name == "event":
                event = value
            elif name == "id":
                event_id = value
            elif name == "data":
                data.append(value)

    async def until(self, kind_wanted: str, /, **fields: Any) -> tuple[str | None, Any]:
        """The next event of this kind whose data holds `fields`."""
        while True:
            kind, event_id, data = await self.next()
            if kind == kind_wanted and all(data.get(k) == v for k, v in fields.items()):
                return event_id, data


@asynccontextmanager
async def stream(api: Api, token: str | None = VIEWER_TOKEN) -> AsyncIterator[EventReader]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    async with api.client.get("/api/events", headers=headers) as response:
        assert response.status == 200, await response.text()
        yield EventReader(response)


def open_streams(api: Api) -> int:
    return api.client.server.app[EVENTS].open  # type: ignore[union-attr]


async def until_closed(api: Api) -> None:
    for _ in range(int(WAIT_S / 0.05)):
        if open_streams(api) == 0:
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"{open_streams(api)} event streams still open")


async def test_the_stream_starts_with_the_figures(api: Api) -> None:
    async with api.client.get("/api/events", headers={"Authorization": f"Bearer {VIEWER_TOKEN}"}) as response:
        assert response.status == 200
        assert response.headers["Content-Type"] == "text/event-stream"
        assert response.headers["Cache-Control"] == "no-cache"
        assert response.headers["X-Request-Id"]
        kind, _, figures = await EventReader(response).next()
    _, overview = await api.get("/api/jobs")
    assert kind == "figures"
    assert set(figures) == set(overview) and set(figures["queues"]) == set(api.settings.queues)


async def test_an_added_job_and_a_pause_are_sent(api: Api) -> None:
    await api.add(companyId="comp_before", companyName="Before")  # before the stream: not sent
    async with stream(api) as reader:
        await reader.until("figures")
        job = await api.add()
        event_id, data = await reader.until("job", event="added")
        assert data == {"queue": "research", "event": "added", "job": job}
        assert event_id and "-" in event_id
        _, figures = await reader.until("figures")  # the figures follow events
        assert figures["queues"]["research"]["waiting"] == 2

        status, _ = await api.post("/api/queues/research", {"action": "pause"})
        assert status == 200
        _, data = await reader.until("job", event="paused")
        assert data == {"queue": "research", "event": "paused", "job": ""}


async def test_events_added_between_two_reads_are_all_sent(api: Api) -> None:
    async with stream(api) as reader:
        await reader.until("figures")
        jobs = [await api.add(companyId=f"comp_{i}", companyName="Acme") for i in range(5)]
        seen = [(await reader.until("job", event="added"))[1]["job"] for _ in jobs]
    assert seen == jobs


async def test_a_keep_alive_comment_when_nothing_happens(api: Api, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(events, "KEEP_ALIVE_S", 0.2)
    async with stream(api) as reader:
        await reader.until("figures")
        line = await asyncio.wait_for(reader.response.content.readline(), WAIT_S)
        assert line == b": keep-alive\n"


async def test_the_stream_needs_a_token(api: Api) -> None:
    status, answer = await api.get("/api/events", token=None)
    assert (status, answer["error"]) == (401, "unauthorized")


async def test_past_the_cap_the_answer_is_503(api: Api, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(events, "MAX_EVENT_STREAMS", 1)
    async with stream(api) as reader:
        await reader.until("figures")
        status, answer = await api.get("/api/events")
        assert (status, answer["error"]) == (503, "unavailable")
    await until_closed(api)
    async with stream(api) as reader:
        await reader.until("figures")


async def test_one_token_holds_at_most_its_share_of_the_streams(api: Api) -> None:
    """API_EVENTS_PER_TOKEN (8): a viewer opening more gets 429; an admin still gets in."""
    share = api.settings.api_events_per_token
    assert share == 8
    async with AsyncExitStack() as held:
        for _ in range(share):
            await (await held.enter_async_context(stream(api))).until("figures")
        status, answer = await api.get("/api/events", token=VIEWER_TOKEN)
        assert (status, answer["error"]) == (429, "too_many_requests")
        assert "API_EVENTS_PER_TOKEN" in answer["message"]
        async with stream(api, ADMIN_TOKEN) as admin:
            await admin.until("figures")
        assert api.client.server.app[EVENTS].by_caller["dashboard"] == share  # type: ignore[union-attr]
    await until_closed(api)
    async with stream(api) as reader:  # the share is given back when the streams end
        await reader.until("figures")


async def test_the_server_side_ends_when_the_client_goes_away(api: Api) -> None:
    async with stream(api) as reader:
        await reader.until("figures")
        assert open_streams(api) == 1
    await until_closed(api)
    assert connections_in_use(api.client.server.app[EVENTS].redis) == 0


def connections_in_use(client: Any) -> int:
    if isinstance(client, RedisCluster):
        return sum(len(node._connections) - len(node._free) for node in client.get_nodes())
    return len(client.connection_pool._in_use_connections)


async def test_shutdown_ends_open_streams(api: Api, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING):
        async with stream(api) as reader:
            await reader.until("figures")
            await asyncio.wait_for(api.client.server.close(), 5.0)  # within a read block or two
            with pytest.raises((EOFError, aiohttp.ClientPayloadError)):
                while True:
                    await reader.next()
    assert open_streams(api) == 0
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING], caplog.text


async def test_the_stream_is_documented(api: Api) -> None:
    status, document = await api.get("/api/openapi.json")
    assert status == 200
    operation = document["paths"]["/api/events"]["get"]
    assert list(operation["responses"]["200"]["content"]) == ["text/event-stream"]
    assert {"401", "403", "429", "503"} <= set(operation["responses"]) and operation["tags"] == ["operations"]
