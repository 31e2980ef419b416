"""The operating commands of `tgjobs`, each run as a real subprocess against the test
Redis: job, retry, remove, clean, pause, resume, dlq list/replay/purge, watch, health;
the worker registry and its heartbeat; GET /api/workers."""

from __future__ import annotations

import asyncio
import json
import os
import pty
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

import pytest
import redis
from test_cli import REPO_ROOT, Run, client, clean_env, ok, one_line_error, tgjobs  # noqa: F401 (fixtures)

from cli.embedded_redis import free_port
from config import Settings
from streams import JobContext, QueueKeys, QueueWorker, UnrecoverableError
from streams.keys import WorkerKeys
from streams.registry import Heartbeat, WorkerInfo, WorkerRegistry

QUEUE = "research"  # a queue with job records; its handler is the test's own


def run_jobs(redis_url: str, key_prefix: str, queue: str = QUEUE) -> None:
    """Runs a worker in this process until the queue is drained. Its handler logs,
    reports progress and returns; data {"fail": true} dead-letters the job at once."""

    async def handler(ctx: JobContext) -> dict[str, Any]:
        await ctx.log(f"working on {ctx.id}")
        await ctx.progress(50)
        if (ctx.data or {}).get("fail"):
            raise UnrecoverableError("asked to fail")
        return {"answer": 42}

    async def go() -> None:
        settings = Settings(redis_url=redis_url, key_prefix=key_prefix, read_block=1, shutdown_grace=5)
        await QueueWorker(settings, queue, handler).run(burst=True)

    asyncio.run(go())


def publish(tgjobs: Run, data: dict[str, Any], count: int = 1, queue: str = QUEUE) -> list[str]:
    rows = json.loads(ok(tgjobs("publish", queue, json.dumps(data), "--count", str(count), "--json")))
    return [r["id"] for r in rows]


# -- job, retry, remove -------------------------------------------------------------------

def test_job_shows_state_progress_logs_and_result(tgjobs: Run, redis_url: str, key_prefix: str) -> None:
    (job_id,) = publish(tgjobs, {"companyId": "comp_1"})
    waiting = json.loads(ok(tgjobs("job", job_id, "--json")))
    assert (waiting["id"], waiting["state"], waiting["data"], waiting["logs"]) == (
        job_id, "waiting", {"companyId": "comp_1"}, [])

    run_jobs(redis_url, key_prefix)
    done = json.loads(ok(tgjobs("job", job_id, "--json")))
    assert done["state"] == "completed"
    assert done["progress"] == 100  # a completed job is done
    assert done["returnvalue"] == {"answer": 42}
    assert done["logs"] == [f"working on {job_id}"]
    assert done["attemptsMade"] == 1

    text = ok(tgjobs("job", job_id))
    fields = dict(line.split(None, 1) for line in text.splitlines() if line and line[0] != " " and line != "logs:")
    assert fields["state"] == "completed"
    assert fields["progress"] == "100"
    assert fields["result"] == '{"answer":42}'
    assert f"  working on {job_id}" in text.splitlines()


def test_job_not_found_and_malformed_ids_exit_1(tgjobs: Run) -> None:
    assert "not found" in one_line_error(tgjobs("job", "research-01JD2X5V3G8K6M7W4Q9T1B0C2E"), 1)
    one_line_error(tgjobs("job", "nosuchqueue-01JD2X5V3G8K6M7W4Q9T1B0C2E"), 1)
    one_line_error(tgjobs("job", "not an id"), 1)


def test_retry_a_failed_job_and_remove_it(tgjobs: Run, redis_url: str, key_prefix: str) -> None:
    (job_id,) = publish(tgjobs, {"fail": True})
    # Only failed jobs can be retried: a waiting one is a conflict (exit 1).
    assert "only failed jobs" in one_line_error(tgjobs("retry", job_id), 1)
    run_jobs(redis_url, key_prefix)
    failed = json.loads(ok(tgjobs("job", job_id, "--json")))
    assert failed["state"] == "failed"
    assert failed["failedReason"] == "asked to fail"
    assert failed["progress"] == 50 and failed["logs"] == [f"working on {job_id}"]
    assert "error" in ok(tgjobs("job", job_id))

    assert json.loads(ok(tgjobs("retry", job_id, "--json"))) == {"id": job_id, "action": "retry", "done": True}
    assert json.loads(ok(tgjobs("job", job_id, "--json")))["state"] == "waiting"

    assert ok(tgjobs("remove", job_id)).strip() == f"{job_id} removed"
    one_line_error(tgjobs("job", job_id), 1)
    one_line_error(tgjobs("remove", job_id), 1)
    one_line_error(tgjobs("retry", job_id), 1)


# -- clean, pause, resume -------------------------------------------------------------------

def test_clean_deletes_finished_records_past_the_grace(tgjobs: Run, redis_url: str, key_prefix: str,
                                                       client: redis.Redis) -> None:
    done = publish(tgjobs, {"n": 1}, count=3)
    (failed,) = publish(tgjobs, {"fail": True})
    run_jobs(redis_url, key_prefix)
    keys = QueueKeys(key_prefix, QUEUE)

    kept = json.loads(ok(tgjobs("clean", QUEUE, "--json")))  # default grace 24h: all too recent
    assert kept == {"queue": QUEUE, "type": "completed", "removed": []}

    time.sleep(0.05)
    first = json.loads(ok(tgjobs("clean", QUEUE, "--grace", "0s", "--limit", "2", "--json")))["removed"]
    assert len(first) == 2 and set(first) <= set(done)
    out = ok(tgjobs("clean", QUEUE, "--grace", "10ms"))
    assert "deleted 1 completed" in out
    assert client.zcard(keys.state_index("completed")) == 0
    assert all(not client.exists(keys.job(j)) for j in done)

    assert client.exists(keys.job(failed))
    gone = json.loads(ok(tgjobs("clean", QUEUE, "--grace", "0s", "--type", "failed", "--json")))["removed"]
    assert gone == [failed] and not client.exists(keys.job(failed))

    assert "--grace" in one_line_error(tgjobs("clean", QUEUE, "--grace", "soon"), 2)
    one_line_error(tgjobs("clean", QUEUE, "--limit", "0"), 2)
    one_line_error(tgjobs("clean", "nosuchqueue"), 2)
    assert tgjobs("clean", QUEUE, "--type", "waiting").returncode == 2


def test_pause_and_resume(tgjobs: Run, client: redis.Redis, key_prefix: str) -> None:
    publish(tgjobs, {"n": 1}, count=2, queue="enrichment")
    assert ok(tgjobs("pause", "enrichment")).strip() == "enrichment paused"
    by_queue = {r["queue"]: r for r in json.loads(ok(tgjobs("status", "--json")))}
    assert (by_queue["enrichment"]["state"], by_queue["enrichment"]["paused"]) == ("paused", 2)
    assert client.hget(QueueKeys(key_prefix, "enrichment").meta, "paused") == "1"

    assert json.loads(ok(tgjobs("resume", "enrichment", "--json"))) == {"queue": "enrichment", "paused": False}
    by_queue = {r["queue"]: r for r in json.loads(ok(tgjobs("status", "--json")))}
    assert (by_queue["enrichment"]["state"], by_queue["enrichment"]["waiting"]) == ("running", 2)
    events = [f["event"] for _, f in client.xrange(QueueKeys(key_prefix, "enrichment").events)]
    assert events[-2:] == ["paused", "resumed"]
    one_line_error(tgjobs("pause", "nosuchqueue"), 2)


# -- dead letters -----------------------------------------------------------------------------

def test_dlq_list_replay_purge(tgjobs: Run, redis_url: str, key_prefix: str, client: redis.Redis) -> None:
    ids = publish(tgjobs, {"fail": True}, count=3)
    run_jobs(redis_url, key_prefix)

    letters = json.loads(ok(tgjobs("dlq", "list", QUEUE, "--json")))
    assert sorted(d["jobId"] for d in letters) == sorted(ids)
    assert all(d["error"] == "asked to fail" and d["errorType"] == "UnrecoverableError" for d in letters)
    table = ok(tgjobs("dlq", "list", QUEUE)).splitlines()
    assert table[0].split()[:2] == ["entry", "job"] and len(table) == 4
    assert len(json.loads(ok(tgjobs("dlq", "list", QUEUE, "--limit", "1", "--json")))) == 1

    replayed = json.loads(ok(tgjobs("dlq", "replay", QUEUE, "--ids", ids[0], "--json")))
    assert replayed == {"queue": QUEUE, "action": "replay", "replayed": [ids[0]]}
    assert json.loads(ok(tgjobs("job", ids[0], "--json")))["state"] == "waiting"
    assert len(json.loads(ok(tgjobs("dlq", "list", QUEUE, "--json")))) == 2

    out = tgjobs("dlq", "replay", QUEUE)  # every letter; ids on stdout, the summary on stderr
    assert out.returncode == 0 and sorted(out.stdout.split()) == sorted(ids[1:])
    assert "replayed 2" in out.stderr
    assert json.loads(ok(tgjobs("dlq", "list", QUEUE, "--json"))) == []

    run_jobs(redis_url, key_prefix)  # they fail again
    assert len(json.loads(ok(tgjobs("dlq", "list", QUEUE, "--json")))) == 3
    purged = json.loads(ok(tgjobs("dlq", "purge", QUEUE, "--ids", f"{ids[0]},{ids[1]}", "--json")))
    assert purged == {"queue": QUEUE, "action": "purge", "purged": 2}
    assert ok(tgjobs("dlq", "purge", QUEUE)).strip() == f"{QUEUE}: purged 1 dead letter(s)"
    assert client.xlen(QueueKeys(key_prefix, QUEUE).dead) == 0

    one_line_error(tgjobs("dlq", "replay", QUEUE, "--ids", "enrichment-01JD2X5V3G8K6M7W4Q9T1B0C2E"), 2)
    one_line_error(tgjobs("dlq", "list", "nosuchqueue"), 2)
    assert tgjobs("dlq", "drop", QUEUE).returncode == 2


# -- progress bars only on a terminal -----------------------------------------------------------

def on_a_terminal(redis_url: str, key_prefix: str, *args: str) -> str:
    """Runs `tgjobs ARGS...` with its stdout on a pseudo-terminal; returns what it wrote there."""
    env = {**clean_env(), "REDIS_URL": redis_url, "KEY_PREFIX": key_prefix, "COLUMNS": "100"}
    leader, follower = pty.openpty()
    proc = subprocess.Popen([sys.executable, "-m", "cli.main", *args],
                            cwd=REPO_ROOT, env=env, stdout=follower, stderr=subprocess.PIPE)
    os.close(follower)
    chunks = []
    while True:
        try:
            chunk = os.read(leader, 65536)
        except OSError:  # the terminal closed: the process exited
            break
        if not chunk:
            break
        chunks.append(chunk)
    assert proc.wait(timeout=60) == 0
    os.close(leader)
    proc.communicate(timeout=10)
    return b"".join(chunks).decode(errors="replace")


def test_bulk_publish_shows_progress_only_on_a_terminal(redis_url: str, key_prefix: str,
                                                        client: redis.Redis) -> None:
    output = on_a_terminal(redis_url, key_prefix, "publish", QUEUE, "{}", "--count", "1200")
    assert "publishing to research" in output  # rich drew its bar on the terminal
    assert output.count(f"{QUEUE}-") == 1200
    assert client.zcard(QueueKeys(key_prefix, QUEUE).state_index("waiting")) == 1200


def test_bulk_replay_shows_progress_on_a_terminal(tgjobs: Run, redis_url: str, key_prefix: str) -> None:
    ids = publish(tgjobs, {"fail": True}, count=3)
    run_jobs(redis_url, key_prefix)
    output = on_a_terminal(redis_url, key_prefix, "dlq", "replay", QUEUE)
    assert "replaying research" in output
    assert set(re.findall(r"research-[0-9A-Z]{26}", output)) == set(ids)
    assert json.loads(ok(tgjobs("dlq", "list", QUEUE, "--json"))) == []


def test_bulk_publish_piped_prints_only_ids(tgjobs: Run) -> None:
    out = ok(tgjobs("publish", QUEUE, "{}", "--count", "600"))
    assert len(out.split()) == 600 and all(line.startswith(f"{QUEUE}-") for line in out.splitlines())


# -- watch ------------------------------------------------------------------------------------------

def test_watch_once_json_has_counts_lag_and_throughput(tgjobs: Run, redis_url: str, key_prefix: str) -> None:
    publish(tgjobs, {"n": 1}, count=4)
    publish(tgjobs, {"fail": True})
    run_jobs(redis_url, key_prefix)
    publish(tgjobs, {"n": 2}, count=2, queue="enrichment")
    frame = json.loads(ok(tgjobs("watch", "--once", "--json")))
    rows = {r["queue"]: r for r in frame["queues"]}
    assert set(rows) == {"research", "enrichment", "reports", "signals"}
    research = rows["research"]
    assert (research["completed"], research["failed"], research["dead"], research["lag"]) == (4, 1, 1, 0)
    assert research["donePerSecond"] == pytest.approx(0.4)  # 4 completions in the 10 s window
    assert research["failedPerSecond"] == pytest.approx(0.1)
    assert research["consumers"] == 1
    assert (rows["enrichment"]["waiting"], rows["enrichment"]["lag"]) == (2, 2)
    assert frame["workers"] == 0


def test_watch_once_prints_a_table(tgjobs: Run) -> None:
    publish(tgjobs, {"n": 1}, count=2)
    out = ok(tgjobs("watch", "--once"))
    assert "done/s" in out and "live worker" in out
    line = next(line for line in out.splitlines() if " research " in line)
    assert "running" in line
    one_line_error(tgjobs("watch", "--interval", "often"), 2)


def test_watch_live_redraws_until_interrupted(redis_url: str, key_prefix: str) -> None:
    env = {**clean_env(), "REDIS_URL": redis_url, "KEY_PREFIX": key_prefix}
    proc = subprocess.Popen([sys.executable, "-m", "cli.main", "watch", "--interval", "200ms"], cwd=REPO_ROOT,
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    time.sleep(2)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 130, err
    assert out.count("done/s") >= 1 and "research" in out


# -- worker registry and health ------------------------------------------------------------------

@pytest.fixture
def worker_env(redis_url: str, key_prefix: str) -> dict[str, str]:
    return {**clean_env(), "REDIS_URL": redis_url, "KEY_PREFIX": key_prefix,
            "WORKER_HEARTBEAT": "200ms", "WORKER_TTL": "1s"}


@pytest.fixture
def start_workers(worker_env: dict[str, str]) -> Iterator[Any]:
    procs: list[subprocess.Popen[str]] = []

    def start(*args: str) -> subprocess.Popen[str]:
        proc = subprocess.Popen([sys.executable, "-m", "cli.main", "workers", *args], cwd=REPO_ROOT,
                                env=worker_env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        procs.append(proc)
        return proc

    yield start
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
        proc.communicate(timeout=30)


def wait_for(predicate: Any, timeout: float = 20.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if value := predicate():
            return value
        time.sleep(0.1)
    raise AssertionError("condition not met in time")


def test_health_follows_this_hosts_workers(tgjobs: Run, worker_env: dict[str, str], start_workers: Any,
                                           client: redis.Redis, key_prefix: str) -> None:
    line = one_line_error(tgjobs("health", env=worker_env), 1)
    assert "no live worker" in line
    assert json.loads(tgjobs("health", "--json", env=worker_env).stdout)["healthy"] is False

    proc = start_workers("--queues", "signals")
    report = wait_for(lambda: (r := tgjobs("health", "--json", env=worker_env)).returncode == 0
                      and json.loads(r.stdout))
    assert report["healthy"] is True and report["redis"] == "ok" and report["host"] == socket.gethostname()
    (worker,) = report["workers"]
    assert (worker["pid"], worker["queues"], worker["host"]) == (proc.pid, ["signals"], socket.gethostname())
    assert worker["inFlight"] == {"signals": 0}
    assert worker["id"].startswith(f"{socket.gethostname()}-{proc.pid}-")
    assert "healthy" in ok(tgjobs("health", env=worker_env))
    assert "research" in one_line_error(tgjobs("health", "--queues", "signals,research", env=worker_env), 1)
    ok(tgjobs("health", "--queues", "signals", env=worker_env))
    one_line_error(tgjobs("health", "--queues", "nosuchqueue", env=worker_env), 2)

    # The heartbeat refreshes the entry: it outlives several TTLs.
    key = WorkerKeys(key_prefix).worker(worker["id"])
    first = int(client.hget(key, "heartbeatAt"))
    time.sleep(1.5)
    assert int(client.hget(key, "heartbeatAt")) > first and 0 < client.pttl(key) <= 1000

    # A clean stop removes the entry at once.
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=30) == 0
    assert not client.exists(key)
    assert not client.sismember(WorkerKeys(key_prefix).roster, worker["id"])
    one_line_error(tgjobs("health", env=worker_env), 1)


def test_a_killed_worker_is_unhealthy_at_once_and_expires(tgjobs: Run, worker_env: dict[str, str],
                                                          start_workers: Any, client: redis.Redis,
                                                          key_prefix: str) -> None:
    proc = start_workers("--queues", "signals")
    wait_for(lambda: tgjobs("health", env=worker_env).returncode == 0)
    (worker_id,) = client.smembers(WorkerKeys(key_prefix).roster)
    proc.kill()
    proc.wait(timeout=30)
    # Its entry is still there until the TTL, but its process is gone: unhealthy now.
    one_line_error(tgjobs("health", env=worker_env), 1)
    wait_for(lambda: not client.exists(WorkerKeys(key_prefix).worker(worker_id)), timeout=5)


def test_health_with_redis_unreachable_exits_3(tgjobs: Run) -> None:
    url = f"redis://:s3cret@127.0.0.1:{free_port()}/0"
    for args in (("health",), ("watch", "--once"), ("pause", QUEUE), ("dlq", "list", QUEUE),
                 ("job", "research-01JD2X5V3G8K6M7W4Q9T1B0C2E"), ("clean", QUEUE)):
        result = tgjobs(*args, env={"REDIS_URL": url})
        one_line_error(result, 3)
        assert "s3cret" not in result.stderr + result.stdout


def test_worker_ttl_must_exceed_the_heartbeat(tgjobs: Run) -> None:
    line = one_line_error(tgjobs("health", env={"WORKER_HEARTBEAT": "5s", "WORKER_TTL": "5s"}), 2)
    assert "WORKER_TTL" in line


async def test_registry_entries_expire_and_leave_the_roster(make_settings: Any, engine_redis: Any) -> None:
    settings = make_settings(worker_heartbeat=0.1, worker_ttl=0.5)
    registry = WorkerRegistry(engine_redis, settings)
    info = WorkerInfo(id="host-1-abc", host="host", pid=1, queues=["jobs"], started_at=1, heartbeat_at=2,
                      in_flight={"jobs": 3})
    await registry.beat(info)
    (live,) = await registry.live()
    assert live == info and live.total_in_flight == 3
    await asyncio.sleep(0.7)
    assert await registry.live() == []
    assert await engine_redis.scard(WorkerKeys(settings.key_prefix).roster) == 0


async def test_heartbeat_keeps_the_entry_fresh_then_leaves(make_settings: Any, engine_redis: Any) -> None:
    settings = make_settings(worker_heartbeat=0.1, worker_ttl=0.4)
    counts = {"jobs": 0}
    heartbeat = Heartbeat(engine_redis, settings, "me-1-x", ["jobs"], lambda: dict(counts))
    task = asyncio.create_task(heartbeat.run())
    try:
        await asyncio.sleep(0.3)
        counts["jobs"] = 2
        await asyncio.sleep(0.6)  # longer than the TTL
        (live,) = await WorkerRegistry(engine_redis, settings).live()
        assert live.id == "me-1-x" and live.in_flight == {"jobs": 2} and live.pid == os.getpid()
    finally:
        heartbeat.stop()
        await task
    assert await WorkerRegistry(engine_redis, settings).live() == []


# -- up: the API beside the workers, both registered ------------------------------------------------

def test_up_serves_the_api_and_lists_its_worker(tgjobs: Run, worker_env: dict[str, str], start_workers: Any) -> None:
    import urllib.request

    port = free_port()
    env = {**worker_env, "API_PORT": "1"}  # --port wins over the setting
    proc = subprocess.Popen([sys.executable, "-m", "cli.main", "up", "--host", "127.0.0.1", "--port", str(port),
                             "--queues", "signals"], cwd=REPO_ROOT, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        def workers() -> Any:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/workers", timeout=5) as answer:
                    return json.loads(answer.read())["workers"]
            except OSError:
                return None

        (worker,) = wait_for(workers)
        assert (worker["pid"], worker["queues"]) == (proc.pid, ["signals"])
        ok(tgjobs("health", "--queues", "signals", env=worker_env))
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
        one_line_error(tgjobs("health", env=worker_env), 1)
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.communicate(timeout=30)
    one_line_error(tgjobs("up", "--port", "0"), 2)
    one_line_error(tgjobs("up", "--queues", "nosuchqueue"), 2)


# -- redis --stop ---------------------------------------------------------------------------------

def test_redis_stop_shuts_the_embedded_redis_down(tgjobs: Run, tmp_path: Any) -> None:
    from cli.embedded_redis import ping

    port = free_port()
    env = {**clean_env(), "DATA_DIR": str(tmp_path), "EMBEDDED_REDIS_PORT": str(port)}
    proc = subprocess.Popen([sys.executable, "-m", "cli.main", "redis"], cwd=REPO_ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        wait_for(lambda: ping(port))
        stop = tgjobs("redis", "--stop", env={"DATA_DIR": str(tmp_path), "EMBEDDED_REDIS_PORT": str(port)})
        assert stop.returncode == 0 and "stopped" in stop.stderr
        assert proc.wait(timeout=30) == 0
        assert not ping(port)
        assert (tmp_path / "redis").is_dir()
        again = tgjobs("redis", "--stop", env={"EMBEDDED_REDIS_PORT": str(port)})
        assert again.returncode == 0 and "no embedded Redis" in again.stderr
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.communicate(timeout=30)


async def test_heartbeat_survives_a_failing_beat(make_settings: Any, engine_redis: Any) -> None:
    settings = make_settings(worker_heartbeat=0.05, worker_ttl=1)
    heartbeat = Heartbeat(engine_redis, settings, "me-2-y", ["jobs"], lambda: {"jobs": 0})
    real_beat, calls = heartbeat.registry.beat, []

    async def flaky(info: WorkerInfo) -> None:
        calls.append(1)
        if len(calls) == 1:
            raise redis.ResponseError("WRONGTYPE a bug, say")
        await real_beat(info)

    heartbeat.registry.beat = flaky  # type: ignore[method-assign]
    task = asyncio.create_task(heartbeat.run())
    try:
        await asyncio.sleep(0.3)
        assert [w.id for w in await WorkerRegistry(engine_redis, settings).live()] == ["me-2-y"]
    finally:
        heartbeat.stop()
        await task


# -- GET /api/workers --------------------------------------------------------------------------------

async def test_api_lists_live_workers(make_settings: Any, engine_redis: Any) -> None:
    from aiohttp.test_utils import TestClient, TestServer

    from api.app import create_app

    settings = make_settings(worker_heartbeat=0.1, worker_ttl=5)
    await WorkerRegistry(engine_redis, settings).beat(WorkerInfo(
        id="h-7-a", host="h", pid=7, queues=["jobs"], started_at=1_705_314_300_000,
        heartbeat_at=1_705_314_301_000, in_flight={"jobs": 1}))
    async with TestClient(TestServer(create_app(settings))) as http:
        answer = await http.get("/api/workers")
        assert answer.status == 200, await answer.text()
        body = await answer.json()
    (worker,) = body["workers"]
    assert worker == {"id": "h-7-a", "host": "h", "pid": 7, "queues": ["jobs"],
                      "startedAt": "2024-01-15T10:25:00.000Z", "heartbeatAt": "2024-01-15T10:25:01.000Z",
                      "inFlight": {"jobs": 1}}
    assert "timestamp" in body
