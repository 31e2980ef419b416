"""The OpenAPI fuzz test: schemathesis generates requests (valid and invalid) from the
document the server itself serves at GET /api/openapi.json, sends them to the real app
on the real test Redis with the admin token (so management endpoints run too), and
checks every answer: never a 5xx, only documented status codes and content types, and
bodies that conform to the documented schemas.

The server runs on a loopback port in a thread of its own (schemathesis's transport is
synchronous), on a key prefix seeded with jobs of every outcome, dead letters and audit
entries, so listings answer with real items. Generation is derandomized and bounded.

Schemathesis's own engine runs the phases (as its CLI does): its pytest loader
`schemathesis.pytest.from_fixture` sets `request.node._nodeid`, which pytest 9 no longer has.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Iterator
from typing import Any

import aiohttp
import pytest
import schemathesis
from aiohttp import web
from conftest import ADMIN_TOKEN, FAST_RESEARCH, SEED_BODIES, TOKENS, outcome_by_data, run_jobs
from schemathesis.engine import events

from api import create_app
from api.endpoints import ENDPOINTS
from config import Settings

MAX_EXAMPLES = 50  # per operation, in the fuzzing phase; the whole test stays well under a minute
SEED = 20240115
DOCUMENT = "/api/openapi.json"
EVENTS = "/api/events"  # a stream that never ends: tests/test_api/test_api_events.py covers it
START_TIMEOUT_S = 30.0
REQUEST_TIMEOUT_S = 10.0
CHECKS = ("not_a_server_error", "status_code_conformance", "content_type_conformance",
          "response_headers_conformance", "response_schema_conformance")
AUTH = {"Authorization": f"Bearer {ADMIN_TOKEN}"}


class ThreadedApi:
    """The real app behind aiohttp's AppRunner on 127.0.0.1 (a free port), with its own
    event loop in a daemon thread; seeded before it reports ready."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.url = ""
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._thread = threading.Thread(target=self._run, name="fuzzed-api", daemon=True)

    def __enter__(self) -> ThreadedApi:
        self._thread.start()
        if not self._ready.wait(START_TIMEOUT_S):
            raise TimeoutError("the API did not start")
        if self._error is not None:
            raise self._error
        return self

    def __exit__(self, *exc: object) -> None:
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(START_TIMEOUT_S)

    def _run(self) -> None:
        try:
            asyncio.run(self._serve())
        except BaseException as exc:  # noqa: BLE001 - handed to the test's thread
            self._error = exc
            self._ready.set()

    async def _serve(self) -> None:
        self._loop, self._stop = asyncio.get_running_loop(), asyncio.Event()
        runner = web.AppRunner(create_app(self.settings), shutdown_timeout=1)
        await runner.setup()
        try:
            site = web.TCPSite(runner, "127.0.0.1", 0)
            await site.start()
            port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
            self.url = f"http://127.0.0.1:{port}"
            await seed(self.url, self.settings)
            self._ready.set()
            await self._stop.wait()
        finally:
            await runner.cleanup()


async def seed(url: str, settings: Settings) -> None:
    """Jobs of every type; research jobs completed, failed (dead letters) and waiting;
    a few management actions, so the audit trail has entries."""
    async with aiohttp.ClientSession(url, headers=AUTH) as http:
        async def call(method: str, path: str, body: Any = None) -> Any:
            async with http.request(method, path, json=body) as response:
                assert response.status < 300, await response.text()
                return await response.json()

        for company in ("comp_1", "comp_2", "bad_3", "bad_4"):
            await call("POST", "/api/jobs", {"type": "research", "data": {"companyId": company,
                                                                         "companyName": "Acme"}})
        await run_jobs(settings, outcome_by_data)
        for body in SEED_BODIES.values():
            await call("POST", "/api/jobs", body)
        await call("POST", "/api/queues/enrichment", {"action": "pause"})
        await call("POST", "/api/queues/enrichment", {"action": "resume"})
        await call("POST", "/api/queues/research", {"action": "clean", "options": {"grace": 0, "limit": 1}})


@pytest.fixture
def fuzzed_api(make_settings: Callable[..., Settings]) -> Iterator[ThreadedApi]:
    with ThreadedApi(make_settings(api_tokens=TOKENS, research=FAST_RESEARCH)) as server:
        yield server


def fuzz_config(base_url: str) -> schemathesis.Config:
    """The examples, coverage and fuzzing phases (stateful testing is left out: it takes
    minutes), valid and invalid data, bounded
    and derandomized; the checks are the five that say "no 5xx, nothing undocumented"."""
    return schemathesis.Config.from_dict({
        "seed": SEED,
        "base-url": base_url,
        "headers": AUTH,
        "workers": 1,
        "request-timeout": REQUEST_TIMEOUT_S,
        "generation": {"max-examples": MAX_EXAMPLES, "deterministic": True, "database": "none", "mode": "all"},
        "phases": {"stateful": {"enabled": False}},
        "checks": {"enabled": False, **{name: {"enabled": True} for name in CHECKS}},
    })


def describe(recorder: Any) -> list[str]:
    """Each failed check of a scenario, with a curl line that reproduces it."""
    found = []
    for nodes in recorder.checks.values():
        for node in nodes:
            if node.failure_info is not None:
                failure = node.failure_info.failure
                found.append(f"{recorder.label}: {node.name}: {failure.title}\n{failure.message}\n"
                             f"{node.failure_info.code_sample}")
    return found


def test_no_input_gives_a_5xx_or_an_answer_outside_the_document(fuzzed_api: ThreadedApi) -> None:
    schema = schemathesis.openapi.from_url(f"{fuzzed_api.url}{DOCUMENT}", config=fuzz_config(fuzzed_api.url))
    schema = schema.exclude(path=EVENTS)
    operations = {f"{op.ok().method.upper()} {op.ok().path}" for op in schema.get_all_operations()}
    # Every route is fuzzed; schemathesis leaves out the one its document came from, and we the event stream.
    assert operations == {f"{ep.method} {ep.path}" for ep in ENDPOINTS} - {f"GET {DOCUMENT}", f"GET {EVENTS}"}

    failures: list[str] = []
    errors: list[str] = []
    scenarios = 0
    finished: events.EngineFinished | None = None
    for event in schemathesis.engine.from_schema(schema).execute():
        if isinstance(event, events.ScenarioFinished):
            scenarios += 1
            failures += describe(event.recorder)
        elif isinstance(event, events.NonFatalError):
            errors.append(f"{event.label}: {type(event.value).__name__}: {event.value}")
        elif isinstance(event, events.FatalError):
            raise event.exception
        elif isinstance(event, events.EngineFinished):
            finished = event
    assert finished is not None
    failures += [f"{f.title}: {f.message}" for f in finished.failures]
    assert not errors, "\n\n".join(errors)
    assert not failures, f"{len(failures)} failed checks:\n\n" + "\n\n".join(failures)
    assert scenarios >= len(ENDPOINTS)
