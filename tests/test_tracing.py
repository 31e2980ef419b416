"""Tracing in the engine, the logs and the CLI: the fast path's one span per batch (a
child of its entries' producer span, or linked to several), retries and dead letters as
span events, trace ids on log lines, a console-exporter run of `tgjobs workers`, and
no tracing code loaded while tracing is off."""

from __future__ import annotations

import io
import json
import logging
import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aioredis
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode
from test_cli import clean_env
from tracing_support import attrs, is_child, named, one, spans, traceparent  # noqa: F401  (fixture)

from cli.logs import configure_logging
from config import Settings
from streams import JobContext, JobSpec, Producer, QueueKeys, QueueWorker, connect, tracing

REPO_ROOT = Path(__file__).resolve().parent.parent
TRACE_A, SPAN_A = 0x0AF7651916CD43DD8448EB211C80319C, 0xB7AD6B7169203331
TRACE_B, SPAN_B = 0x1BF7651916CD43DD8448EB211C80319D, 0xC7AD6B7169203332


async def noop(ctx: JobContext) -> dict[str, Any]:
    return {"ok": True}


async def broken(ctx: JobContext) -> None:
    raise RuntimeError("the provider is down")


async def drain(settings: Settings, queue: str, handler: Any) -> None:
    await QueueWorker(settings, queue, handler).run(burst=True)


async def add(settings: Settings, queue: str, specs: list[JobSpec]) -> list[str]:
    redis = connect(settings)
    try:
        return [job.id for job in await Producer(redis, settings).add_many(queue, specs)]
    finally:
        await redis.aclose()


def signal(n: int) -> JobSpec:
    return JobSpec({"signalId": f"s{n}", "signalType": "Email Open", "companyId": "comp_1", "data": {}})


async def test_the_fast_path_records_one_span_per_batch_a_child_of_the_add(
        spans: InMemorySpanExporter, make_settings: Callable[..., Settings]) -> None:
    settings = make_settings()
    await add(settings, "signals", [signal(n) for n in range(40)])
    await drain(settings, "signals", noop)
    add_span, batch = one(spans, "add signals"), one(spans, "batch signals")
    assert is_child(batch, add_span)
    assert attrs(batch)["tgjobs.batch.entries"] == 40 and attrs(batch)["tgjobs.batch.completed"] == 40
    assert attrs(batch)["tgjobs.queue_wait_ms.max"] >= 0
    assert not named(spans, "run signals")  # no span per signal


async def test_raw_xadd_producers_pass_their_trace_in_the_entry(
        spans: InMemorySpanExporter, make_settings: Callable[..., Settings], engine_redis: aioredis.Redis) -> None:
    settings = make_settings()
    stream = QueueKeys(settings.key_prefix, "signals").lane("normal")
    data = json.dumps({"signalId": "s1", "signalType": "Email Open", "companyId": "c", "data": {}})
    await engine_redis.xadd(stream, {"data": data, "traceparent": traceparent(TRACE_A, SPAN_A)})
    await drain(settings, "signals", noop)
    batch = one(spans, "batch signals")
    assert batch.context.trace_id == TRACE_A and batch.parent.span_id == SPAN_A


async def test_a_batch_of_several_traces_links_to_each_and_records_dead_letters_as_events(
        spans: InMemorySpanExporter, make_settings: Callable[..., Settings], engine_redis: aioredis.Redis) -> None:
    settings = make_settings()
    stream = QueueKeys(settings.key_prefix, "signals").lane("normal")
    data = json.dumps({"signalId": "s1", "signalType": "Email Open", "companyId": "c", "data": {}})
    await engine_redis.xadd(stream, {"data": data, "traceparent": traceparent(TRACE_A, SPAN_A)})
    await engine_redis.xadd(stream, {"data": data, "traceparent": traceparent(TRACE_B, SPAN_B)})
    bad = await engine_redis.xadd(stream, {"data": "{not json", "traceparent": traceparent(TRACE_B, SPAN_B)})
    await drain(settings, "signals", noop)
    batch = one(spans, "batch signals")
    assert batch.parent is None
    assert {(link.context.trace_id, link.context.span_id) for link in batch.links} == {(TRACE_A, SPAN_A),
                                                                                    (TRACE_B, SPAN_B)}
    (event,) = batch.events
    assert event.name == "dead_letter" and event.attributes["tgjobs.job.id"] == f"signals-{bad}"
    assert event.attributes["exception.type"] == "InvalidJob"


async def test_each_run_continues_the_add_and_retries_and_dead_letters_are_events(
        spans: InMemorySpanExporter, make_settings: Callable[..., Settings]) -> None:
    settings = make_settings(jobs={"attempts": 2, "backoff": "fixed", "backoff_delay": 0.01})
    (job_id,) = await add(settings, "jobs", [JobSpec({"n": 1})])
    await drain(settings, "jobs", broken)
    add_span = one(spans, "add jobs")
    first, second = sorted(named(spans, "run jobs"), key=lambda s: s.start_time)
    for run, attempt, outcome, event in ((first, 1, "retry", "retry"), (second, 2, "dead", "dead_letter")):
        assert is_child(run, add_span), "every attempt continues the trace kept in the job's record"
        assert attrs(run)["tgjobs.job.id"] == job_id and attrs(run)["tgjobs.attempt"] == attempt
        assert attrs(run)["tgjobs.outcome"] == outcome and run.status.status_code is StatusCode.ERROR
        assert [e.name for e in run.events] == ["exception", event]
    assert first.events[1].attributes["tgjobs.backoff_s"] == pytest.approx(0.01)
    assert "tgjobs.queue_wait_ms" in attrs(first) and "tgjobs.queue_wait_ms" not in attrs(second)


@pytest.mark.parametrize("log_format", ["text", "json"])
def test_log_lines_carry_the_active_span_ids(log_format: str, spans: InMemorySpanExporter, restore_logging: None,
                                            make_settings: Callable[..., Settings]) -> None:
    out = io.StringIO()
    configure_logging(make_settings(log_format=log_format), out)
    log = logging.getLogger("tgjobs.test")
    log.info("outside any span")
    with tracing.span("work", {}):
        log.info("inside a span")
    (work,) = spans.get_finished_spans()
    ids = (f"{work.context.trace_id:032x}", f"{work.context.span_id:016x}")
    outside, inside = out.getvalue().splitlines()
    if log_format == "json":
        assert "trace_id" not in json.loads(outside)
        line = json.loads(inside)
        assert (line["trace_id"], line["span_id"]) == ids
    else:
        assert "trace_id" not in outside
        assert inside.endswith(f"inside a span trace_id={ids[0]} span_id={ids[1]}")


def test_a_console_exporter_run_shows_the_trace_id_in_the_worker_log(
        redis_url: str, key_prefix: str, make_settings: Callable[..., Settings]) -> None:
    import asyncio

    settings = make_settings()
    (job_id,) = asyncio.run(add(settings, "research", [JobSpec({"companyId": "comp_1", "companyName": "Acme"})]))
    env = {**clean_env(), "REDIS_URL": redis_url, "KEY_PREFIX": key_prefix, "OTEL_TRACES_EXPORTER": "console",
           "QUEUES__RESEARCH__RATE_LIMIT": "none"}
    done = subprocess.run([sys.executable, "-m", "cli.main", "workers", "--burst", "--queues", "research"],
                          cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    logged = re.search(rf"job {job_id} completed in \d+ ms trace_id=(\w{{32}}) span_id=(\w{{16}})", done.stderr)
    assert logged, done.stderr
    exported = console_spans(done.stdout)
    (run,) = [s for s in exported if s["name"] == "run research"]
    assert run["context"]["trace_id"] == "0x" + logged[1] and run["context"]["span_id"] == "0x" + logged[2]
    assert run["attributes"]["tgjobs.job.id"] == job_id


def console_spans(stdout: str) -> list[dict[str, Any]]:
    """The spans ConsoleSpanExporter printed: JSON objects one after another."""
    decoder, found, at = json.JSONDecoder(), [], 0
    while (at := stdout.find("{", at)) != -1:
        span, at = decoder.raw_decode(stdout, at)
        found.append(span)
    return found


IMPORT_EVERYTHING = """
import sys
from api import create_app
from cli.main import main
from config import load_settings
from processors.kinds import KINDS
from streams import tracing
settings = load_settings()
assert tracing.setup(settings) is False
create_app(settings)
# redis-py 8 imports the metrics SDK by itself when it is installed; tracing stays unloaded.
loaded = sorted(name for name in sys.modules if name.startswith(("streams.otel", "opentelemetry.sdk.trace")))
assert not loaded, loaded
"""


@pytest.mark.parametrize("exporter", [None, "none"])
def test_tracing_off_loads_no_tracing_code(exporter: str | None) -> None:
    env = {**clean_env(), **({"OTEL_TRACES_EXPORTER": exporter} if exporter else {})}
    done = subprocess.run([sys.executable, "-c", IMPORT_EVERYTHING], cwd=REPO_ROOT, env=env,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr


def test_an_exporter_without_the_extra_is_a_settings_error(redis_url: str) -> None:
    without_extra = "import sys; sys.modules['opentelemetry'] = None; from cli.main import main; sys.exit(main())"
    env = {**clean_env(), "REDIS_URL": redis_url, "OTEL_TRACES_EXPORTER": "otlp"}
    done = subprocess.run([sys.executable, "-c", without_extra, "workers", "--burst"], cwd=REPO_ROOT, env=env,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert done.stderr.startswith("tgjobs: invalid setting OTEL_TRACES_EXPORTER: otlp needs the otel extra "
                                  "(pip install 'tgjobs[otel]')"), done.stderr
    assert len(done.stderr.splitlines()) == 1
