"""The benchmark scripts in smoke mode (N=200) against the test Redis, so they cannot rot:
each exits 0 and ends with one valid JSON line per configuration. No timing assertions."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import orjson
import pytest

ROOT = Path(__file__).parents[1]
KEYS = {"name", "enqueue_per_s", "enqueue_bulk_per_s", "process_per_s", "latency_p50_ms", "latency_p99_ms",
        "peak_rss_mb"}
TIMEOUT_S = 240


@pytest.mark.parametrize(("script", "names"), [
    ("floor.py", {"floor", "floor (gather consume)", "floor (gather, round-trip handler)"}),
    ("engine.py", {"floor", "floor (gather consume)", "regular queue, no-op handler",
                   "signals fast path, no-op handler", "signals fast path, signals processor",
                   "floor (gather, round-trip handler)", "regular queue, round-trip handler",
                   "signals fast path, round-trip handler"}),
])
def test_benchmark_runs_and_prints_json_lines(redis_url: str, script: str, names: set[str]) -> None:
    env = {**os.environ, "REDIS_URL": redis_url, "N": "200"}
    done = subprocess.run([sys.executable, str(ROOT / "benchmarks" / script)], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=TIMEOUT_S, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    rows = [orjson.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
    assert {row["name"] for row in rows} == names, done.stdout
    for row in rows:
        assert set(row) == KEYS
        assert all(row[k] is None or isinstance(row[k], (int, float)) for k in KEYS - {"name"})
        assert row["process_per_s"] > 0 and row["enqueue_per_s"] > 0
    lines = done.stdout.splitlines()
    first_json = next(i for i, line in enumerate(lines) if line.startswith("{"))
    assert any(line.startswith("name ") for line in lines[:first_json])  # the table came first


def test_sink_benchmark_runs_and_prints_json_lines(redis_url: str, postgres_server_url: str) -> None:
    env = {**os.environ, "REDIS_URL": redis_url, "DATABASE_URL": postgres_server_url, "N": "200"}
    done = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "sink.py")], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=TIMEOUT_S, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    rows = {row["name"]: row for row in map(orjson.loads, (line for line in done.stdout.splitlines()
                                                            if line.startswith("{")))}
    assert set(rows) == {"signals fast path, signals processor (outbox on)", "sink, signal rows into PostgreSQL"}
    assert all(set(row) == KEYS and row["process_per_s"] > 0 and row["peak_rss_mb"] > 0 for row in rows.values())


def test_driver_benchmark_runs_and_prints_json_lines(postgres_server_url: str) -> None:
    env = {**os.environ, "DATABASE_URL": postgres_server_url, "N": "200", "BATCH": "50"}
    done = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "pg_drivers.py")], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=TIMEOUT_S, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    rows = [orjson.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
    assert {"asyncpg, json recordset", "asyncpg, copy + insert"} <= {row["name"] for row in rows}
    assert all(row["insert_rows_per_s"] > 0 and row["update_rows_per_s"] > 0 for row in rows)


SCALE_KEYS = {"name", "topology", "processes", "jobs", "process_per_s", "x_one_process", "redis_cpu_us_per_job",
              "redis_busiest_master_cores", "workers_cpu_us_per_job", "workers_cores", "others_cores", "idle_cores",
              "partitions_per_master"}


def test_scale_benchmark_runs_on_one_redis_and_a_cluster(redis_url: str) -> None:
    env = {**os.environ, "REDIS_URL": redis_url, "N": "200", "PROCESSES": "1,2"}
    done = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "scale.py")], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=TIMEOUT_S, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    rows = [orjson.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
    assert [row["processes"] for row in rows] == [1, 2] * 6
    assert {row["topology"] for row in rows[6:]} == {"3-master cluster"}  # the first six: REDIS_URL's
    for row in rows:
        assert set(row) == SCALE_KEYS
        assert row["jobs"] >= 200 and row["process_per_s"] > 0 and row["redis_cpu_us_per_job"] > 0
        assert row["workers_cpu_us_per_job"] > 0
    assert [row["x_one_process"] for row in rows if row["processes"] == 1] == [1.0] * 6
