"""Fixtures of the HTTP API tests: the real app behind aiohttp's test server on the
session's Redis (each test under its own key prefix), tokens of every role, and a
worker run that takes jobs to the state a test needs."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack
from dataclasses import dataclass
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from api import create_app
from config import Settings
from streams import Handler, JobContext, QueueWorker

ADMIN_TOKEN = "admin-token-5f1c0d9e8b7a6c4d"
PRODUCER_TOKEN = "producer-token-3e2d1c0b9a8f7e6d"
VIEWER_TOKEN = "viewer-token-7a6b5c4d3e2f1a0b"
TOKENS = [
    {"name": "ops", "role": "admin", "token": ADMIN_TOKEN},
    {"name": "crm-sync", "role": "producer", "token": PRODUCER_TOKEN},
    {"name": "dashboard", "role": "viewer", "token": VIEWER_TOKEN},
]
# research, as the tests drive it: no rate limit (a burst would wait out the minute),
# one attempt (a failing job is failed at once), a short backoff.
FAST_RESEARCH = {"rate_limit": "none", "attempts": 1, "backoff_delay": 0.05}
BURST_TIMEOUT_S = 30.0

SEED_BODIES: dict[str, dict[str, Any]] = {  # the four POST /api/jobs bodies of the seed, verbatim
    "research": {"type": "research", "data": {"companyId": "comp_123", "companyName": "Acme Corp",
                                              "domain": "acme.com", "priority": "high"}},
    "enrichment": {"type": "enrichment", "data": {"contactId": "contact_456", "companyId": "comp_123",
                                                  "linkedinUrl": "https://linkedin.com/in/john-doe",
                                                  "email": "john@acme.com", "priority": "normal"}},
    "report": {"type": "report", "data": {"companyId": "comp_123", "reportType": "weekly", "userId": "user_789",
                                          "emailTo": "manager@company.com"}},
    "signal": {"type": "signal", "data": {"signalId": "sig_999", "signalType": "Email Open",
                                          "companyId": "comp_123", "data": {"timestamp": "2024-01-15T10:30:00Z"}}},
}


@dataclass
class Api:
    """A client of one running app; requests carry the admin token unless told otherwise."""

    client: TestClient[Any, Any]
    settings: Settings
    token: str | None = ADMIN_TOKEN

    async def call(self, method: str, path: str, *, token: str | None | bool = True,
                   headers: dict[str, str] | None = None, **kwargs: Any) -> tuple[int, Any]:
        """(status, JSON body); `token=None` sends none, a string sends that one."""
        headers = dict(headers or {})
        chosen = self.token if token is True else token
        if chosen:
            headers["Authorization"] = f"Bearer {chosen}"
        async with self.client.request(method, path, headers=headers, **kwargs) as response:
            assert response.content_type == "application/json", await response.text()
            return response.status, await response.json()

    async def get(self, path: str, **kwargs: Any) -> tuple[int, Any]:
        return await self.call("GET", path, **kwargs)

    async def post(self, path: str, body: Any = None, **kwargs: Any) -> tuple[int, Any]:
        if body is not None:
            kwargs["json"] = body
        return await self.call("POST", path, **kwargs)

    async def delete(self, path: str, **kwargs: Any) -> tuple[int, Any]:
        return await self.call("DELETE", path, **kwargs)

    async def add(self, job_type: str = "research", **data: Any) -> str:
        """Adds a job through the API; returns its id."""
        body = {"type": job_type, "data": data or {"companyId": "comp_1", "companyName": "Acme"}}
        status, answer = await self.post("/api/jobs", body)
        assert status == 201, answer
        return str(answer["id"])


StartApi = Callable[[Settings], Awaitable[Api]]


@pytest.fixture
async def start_api() -> AsyncIterator[StartApi]:
    """Starts the app for any settings; every app started is stopped at teardown."""
    async with AsyncExitStack() as stack:
        async def start(settings: Settings) -> Api:
            client = await stack.enter_async_context(TestClient(TestServer(create_app(settings))))
            return Api(client, settings)

        yield start


@pytest.fixture
async def api(start_api: StartApi, make_settings: Callable[..., Settings]) -> Api:
    """The app with a token of each role, on this test's key prefix."""
    return await start_api(make_settings(api_tokens=TOKENS, research=FAST_RESEARCH))


async def run_jobs(settings: Settings, handler: Handler, queue: str = "research") -> None:
    """Runs a worker until the queue is drained."""
    await asyncio.wait_for(QueueWorker(settings, queue, handler).run(burst=True), BURST_TIMEOUT_S)


async def succeed(ctx: JobContext) -> Any:
    await ctx.progress(100)
    await ctx.log(f"researched {ctx.data['companyName']}")
    return {"researchId": f"res_{ctx.id}", "sentiment": "positive"}


async def fail(ctx: JobContext) -> Any:
    raise RuntimeError(f"no data for {ctx.data['companyId']}")


def outcome_by_data(ctx: JobContext) -> Awaitable[Any]:
    """Fails the jobs whose companyId starts with "bad", completes the others."""
    return fail(ctx) if ctx.data["companyId"].startswith("bad") else succeed(ctx)
