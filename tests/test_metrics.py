"""A worker process's own /metrics: `tgjobs workers --metrics-port N` as a real
subprocess on the test Redis, scraped over HTTP and parsed with the Prometheus
client's parser after real jobs ran (signals, the fast path: three good entries, one
that is not a signal and is dead-lettered). In process: rate-limiter waits, the
regular path's outcomes, and queue wait read off the entry id."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from cli.embedded_redis import free_port
from config import Settings
from streams import JobContext, JobSpec, Producer, QueueWorker, metrics

ROOT = Path(__file__).parents[1]
SIGNAL = {"signalId": "sig_m_{n}", "signalType": "Email Open", "companyId": "comp_metrics",
          "data": {"timestamp": "2024-01-15T10:30:00Z"}}


def clean_env() -> dict[str, str]:
    fields = {name.lower() for name in Settings.model_fields}
    return {k: v for k, v in os.environ.items()
            if not k.upper().startswith("QUEUES__") and k.upper() != "TGJOBS_CONFIG" and k.lower() not in fields}


def scrape(port: int) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        text = response.read().decode()
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def value(found: dict[Any, float], name: str, **labels: str) -> float | None:
    return found.get((name, tuple(sorted(labels.items()))))


def test_worker_process_serves_its_metrics(redis_url: str, key_prefix: str) -> None:
    port = free_port()
    env = {**clean_env(), "REDIS_URL": redis_url, "KEY_PREFIX": key_prefix}
    for n in range(3):
        subprocess.run([sys.executable, "-m", "cli.main", "publish", "signals",
                        json.dumps({**SIGNAL, "signalId": f"sig_m_{n}"})],
                       cwd=ROOT, env=env, check=True, capture_output=True, timeout=60)
    subprocess.run([sys.executable, "-m", "cli.main", "publish", "signals", json.dumps({"not": "a signal"})],
                   cwd=ROOT, env=env, check=True, capture_output=True, timeout=60)
    worker = subprocess.Popen([sys.executable, "-m", "cli.main", "workers", "--queues", "signals",
                               "--metrics-port", str(port)], cwd=ROOT, env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 30
        found: dict[Any, float] = {}
        while time.monotonic() < deadline:
            assert worker.poll() is None, worker.communicate()
            try:
                found = scrape(port)
            except OSError:
                found = {}
            settled = (value(found, "tgjobs_worker_jobs_completed_total", queue="signals") or 0) + \
                (value(found, "tgjobs_worker_jobs_failed_total", queue="signals", outcome="dead") or 0)
            if settled >= 4:
                break
            time.sleep(0.1)
        assert value(found, "tgjobs_worker_jobs_completed_total", queue="signals") == 3, found
        assert value(found, "tgjobs_worker_jobs_failed_total", queue="signals", outcome="dead") == 1, found
        # All four were first deliveries: each has a queue wait, and each ran (the handler
        # refuses the one that is not a signal, unrecoverably).
        assert value(found, "tgjobs_worker_job_queue_wait_seconds_count", queue="signals") == 4
        assert 0 < (value(found, "tgjobs_worker_job_queue_wait_seconds_sum", queue="signals") or 0) < 60
        assert value(found, "tgjobs_worker_job_run_seconds_count", queue="signals") == 4
        assert value(found, "tgjobs_worker_jobs_in_flight", queue="signals") == 0
        assert (value(found, "process_resident_memory_bytes") or 0) > 0
    finally:
        worker.send_signal(signal.SIGTERM)
        _, stderr = worker.communicate(timeout=30)
    assert worker.returncode == 0, stderr
    assert "metrics on http://0.0.0.0:" in stderr


def test_metrics_port_in_use_is_one_line_exit_1(redis_url: str, key_prefix: str) -> None:
    server = metrics.serve(0, "127.0.0.1")
    try:
        env = {**clean_env(), "REDIS_URL": redis_url, "KEY_PREFIX": key_prefix, "METRICS_PORT": str(server.port)}
        result = subprocess.run([sys.executable, "-m", "cli.main", "workers", "--queues", "signals", "--burst"],
                                cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    finally:
        server.close()
    assert result.returncode == 1, result.stderr
    assert f"cannot serve metrics on port {server.port}" in result.stderr


def sample(name: str, **labels: str) -> float:
    return metrics.REGISTRY.get_sample_value(name, labels) or 0.0


async def test_outcomes_waits_and_rate_limit_in_process(make_settings: Any) -> None:
    # The counters are process-wide: the test compares before and after.
    settings = make_settings(jobs={"rate_limit": {"max": 2, "per": 0.5}, "attempts": 2, "backoff_delay": 0.01})
    queue = "jobs"
    before = {n: sample(n, queue=queue) for n in ("tgjobs_worker_jobs_completed_total",
                                                   "tgjobs_worker_rate_limited_total",
                                                   "tgjobs_worker_job_queue_wait_seconds_count")}
    dead_before = sample("tgjobs_worker_jobs_failed_total", queue=queue, outcome="dead")
    retry_before = sample("tgjobs_worker_jobs_failed_total", queue=queue, outcome="retry")
    specs = [JobSpec({"n": n}) for n in range(4)] + [JobSpec({"n": -1})]
    from streams import connect
    redis = connect(settings)
    try:
        await Producer(redis, settings).add_many(queue, specs)
    finally:
        await redis.aclose()
    await asyncio.sleep(0.05)  # every entry has waited at least this long

    async def handler(ctx: JobContext) -> Any:
        if ctx.data["n"] < 0:
            raise RuntimeError("never works")
        return ctx.data

    await asyncio.wait_for(QueueWorker(settings, queue, handler).run(burst=True), 30)
    assert sample("tgjobs_worker_jobs_completed_total", queue=queue) - before[
        "tgjobs_worker_jobs_completed_total"] == 4
    assert sample("tgjobs_worker_jobs_failed_total", queue=queue, outcome="retry") - retry_before == 1
    assert sample("tgjobs_worker_jobs_failed_total", queue=queue, outcome="dead") - dead_before == 1
    # Five first deliveries (the retry keeps its entry and is not counted again).
    assert sample("tgjobs_worker_job_queue_wait_seconds_count", queue=queue) - before[
        "tgjobs_worker_job_queue_wait_seconds_count"] == 5
    # Two permits per half second for six runs: the worker waited on the limiter.
    assert sample("tgjobs_worker_rate_limited_total", queue=queue) > before["tgjobs_worker_rate_limited_total"]
    assert sample("tgjobs_worker_rate_limit_wait_seconds_total", queue=queue) > 0


def test_entry_age_reads_the_entry_id() -> None:
    assert metrics.entry_age("1700000000000-0", now_s=1700000001.5) == 1.5
    assert metrics.entry_age("1700000002000-3", now_s=1700000001.0) == 0.0  # clock behind Redis
    assert metrics.entry_age("not-an-id") is None
