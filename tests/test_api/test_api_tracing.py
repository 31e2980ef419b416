"""One job, one trace: POST /api/jobs (continuing the caller's traceparent, or starting
a trace) -> the add -> the worker's run of the research handler -> its homepage fetch,
each span the child of the one before, with the SDK's in-memory exporter."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import redis.asyncio as aioredis
from conftest import FAST_RESEARCH, TOKENS, StartApi, run_jobs
from fake_services import FakeHttp, fake_http  # noqa: F401  (fixture)
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind
from tracing_support import attrs, is_child, one, spans, traceparent  # noqa: F401  (fixture)

from config import Settings
from processors.research import ResearchProcessor

CALLER_TRACE, CALLER_SPAN = 0x4BF92F3577B34DA6A3CE929D0E0E4736, 0x00F067AA0BA902B7


@pytest.mark.parametrize("incoming", [True, False], ids=["caller-traceparent", "new-trace"])
async def test_one_trace_from_the_api_through_the_worker_and_its_http_call(
        incoming: bool, spans: InMemorySpanExporter, start_api: StartApi, fake_http: FakeHttp,
        make_settings: Callable[..., Settings], engine_redis: aioredis.Redis) -> None:
    fake_http.homepage = "<html><head><title>Acme Corp</title></head><body><h1>Acme</h1></body></html>"
    settings = make_settings(api_tokens=TOKENS, research=FAST_RESEARCH, homepage_url=fake_http.homepage_url)
    api = await start_api(settings)
    headers = {"traceparent": traceparent(CALLER_TRACE, CALLER_SPAN)} if incoming else {}
    status, created = await api.post("/api/jobs", {"type": "research", "data": {
        "companyId": "comp_1", "companyName": "Acme Corp", "domain": "acme.test"}}, headers=headers)
    assert status == 201, created
    await run_jobs(settings, ResearchProcessor(settings, engine_redis).handle)

    server, add = one(spans, "POST /api/jobs"), one(spans, "add research")
    run, fetch = one(spans, "run research"), one(spans, "GET")
    assert server.kind is SpanKind.SERVER and attrs(server)["http.response.status_code"] == 201
    if incoming:
        assert server.context.trace_id == CALLER_TRACE and server.parent.span_id == CALLER_SPAN
    else:
        assert server.parent is None
    assert is_child(add, server) and add.kind is SpanKind.PRODUCER
    assert is_child(run, add) and run.kind is SpanKind.CONSUMER
    assert is_child(fetch, run) and fetch.kind is SpanKind.CLIENT
    assert attrs(run)["tgjobs.job.id"] == created["id"]
    assert attrs(run)["tgjobs.queue"] == "research" and attrs(run)["tgjobs.attempt"] == 1
    assert attrs(run)["tgjobs.outcome"] == "completed" and attrs(run)["tgjobs.queue_wait_ms"] >= 0
    assert attrs(fetch)["http.response.status_code"] == 200
    assert attrs(fetch)["url.full"] == fake_http.homepage_url.format(domain="acme.test")
    # The homepage's server was told the trace too, through the request's own header.
    (sent,) = [h["traceparent"] for h in fake_http.homepage_headers]
    assert sent.split("-")[1:3] == traceparent(fetch.context.trace_id, fetch.context.span_id).split("-")[1:3]
