"""The `tgjobs` command, run as a real subprocess against the test Redis: publish,
status, bad input, an unreachable Redis, `workers` without handlers, and --help."""

from __future__ import annotations

import asyncio
import json
import os
import re
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import redis
from redis_server import sync_client

from cli.embedded_redis import free_port
from config import DEFAULT_POLICIES, Settings
from processors.record_keys import CompanyKeys
from streams import QueueAdmin, QueueKeys, connect

REPO_ROOT = Path(__file__).resolve().parent.parent
RUN_TIMEOUT = 60
ID_RE = re.compile(r"^(?P<queue>[a-z][a-z0-9_]*)-[A-Za-z0-9_-]+$")
COMMANDS = ("workers", "publish", "status", "up", "redis", "api", "job", "retry", "remove", "clean", "pause",
            "resume", "dlq", "watch", "health")

Run = Callable[..., subprocess.CompletedProcess[str]]


def clean_env() -> dict[str, str]:
    """The environment without anything Settings would read from it."""
    fields = {name.lower() for name in Settings.model_fields} | {"tgjobs_data_dir"}
    return {k: v for k, v in os.environ.items()
            if not k.upper().startswith("QUEUES__") and k.upper() != "TGJOBS_CONFIG"
            and k.lower() not in fields}


@pytest.fixture
def tgjobs(redis_url: str, key_prefix: str) -> Run:
    """Runs `tgjobs ARGS...` on the test Redis under this test's prefix."""

    def run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        full_env = clean_env()
        full_env.update(REDIS_URL=redis_url, KEY_PREFIX=key_prefix)
        full_env.update(env or {})
        return subprocess.run([sys.executable, "-m", "cli.main", *args], cwd=REPO_ROOT, env=full_env,
                              capture_output=True, text=True, timeout=RUN_TIMEOUT)

    return run


@pytest.fixture
def client(redis_url: str) -> Iterator[redis.Redis]:
    c = sync_client(redis_url, decode_responses=True)
    try:
        yield c
    finally:
        c.close()


def ok(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 0, (result.returncode, result.stdout, result.stderr)
    return result.stdout


def one_line_error(result: subprocess.CompletedProcess[str], code: int) -> str:
    assert result.returncode == code, (result.returncode, result.stdout, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("tgjobs:"), result.stderr
    return lines[0]


# -- publish ----------------------------------------------------------------------------

def test_publish_prints_the_job_id(tgjobs: Run, client: redis.Redis, key_prefix: str) -> None:
    out = ok(tgjobs("publish", "research", '{"companyId": "comp_123", "companyName": "Acme"}'))
    (job_id,) = out.split()
    match = ID_RE.match(job_id)
    assert match and match["queue"] == "research"
    keys = QueueKeys(key_prefix, "research")
    record = client.hgetall(keys.job(job_id))
    assert record["state"] == "waiting"
    assert record["lane"] == "normal"
    assert json.loads(record["data"]) == {"companyId": "comp_123", "companyName": "Acme"}
    assert client.xlen(keys.lane("normal")) == 1


def test_publish_json_and_count(tgjobs: Run, client: redis.Redis, key_prefix: str) -> None:
    rows = json.loads(ok(tgjobs("publish", "research", '{"n": 1}', "--json")))
    assert len(rows) == 1 and rows[0]["queue"] == "research" and rows[0]["created"] is True
    assert ID_RE.match(rows[0]["id"])

    out = ok(tgjobs("publish", "research", '{"n": 2}', "--count", "3"))
    ids = out.split()
    assert len(ids) == 3 and len(set(ids)) == 3
    assert all(i.startswith("research-") for i in ids)
    keys = QueueKeys(key_prefix, "research")
    assert client.xlen(keys.lane("normal")) == 4
    assert client.zcard(keys.state_index("waiting")) == 4

    rows = json.loads(ok(tgjobs("publish", "research", "[1, 2]", "--count", "2", "--json")))
    assert [r["created"] for r in rows] == [True, True]
    assert json.loads(client.hget(keys.job(rows[0]["id"]), "data")) == [1, 2]


def test_publish_priority_high_lands_in_the_high_lane(tgjobs: Run, client: redis.Redis, key_prefix: str) -> None:
    (job_id,) = ok(tgjobs("publish", "enrichment", '{"n": 1}', "--priority", "high")).split()
    keys = QueueKeys(key_prefix, "enrichment")
    assert client.hget(keys.job(job_id), "lane") == "high"
    assert client.xlen(keys.lane("high")) == 1
    assert not client.exists(keys.lane("normal"))
    (entry_id, fields), = client.xrange(keys.lane("high"))
    assert fields["job"] == job_id

    bad = tgjobs("publish", "enrichment", "{}", "--priority", "urgent")
    assert bad.returncode == 2


def test_publish_delay_makes_the_job_delayed(tgjobs: Run, client: redis.Redis, key_prefix: str) -> None:
    seconds, micros = client.time()
    before = seconds * 1000 + micros // 1000
    (job_id,) = ok(tgjobs("publish", "reports", '{"r": 1}', "--delay", "1m")).split()
    keys = QueueKeys(key_prefix, "reports")
    record = client.hgetall(keys.job(job_id))
    assert record["state"] == "delayed"
    due = client.zscore(keys.scheduled, job_id)
    assert due is not None and before + 60_000 <= due <= before + 60_000 + 30_000
    assert int(record["dueAt"]) == int(due)
    assert not client.exists(keys.lane("normal"))

    rows = json.loads(ok(tgjobs("status", "--json")))
    reports = next(r for r in rows if r["queue"] == "reports")
    assert (reports["delayed"], reports["waiting"]) == (1, 0)

    bad = tgjobs("publish", "reports", "{}", "--delay", "soon")
    one_line_error(bad, 2)
    assert "--delay" in bad.stderr


def test_publish_idempotency_key(tgjobs: Run, client: redis.Redis, key_prefix: str) -> None:
    (first,) = ok(tgjobs("publish", "research", '{"n": 1}', "--idempotency-key", "order-7")).split()
    again = ok(tgjobs("publish", "research", '{"n": 2}', "--idempotency-key", "order-7"))
    assert again.split()[0] == first
    assert "already" in again
    rows = json.loads(ok(tgjobs("publish", "research", '{"n": 3}', "--idempotency-key", "order-7", "--json")))
    assert rows == [{"id": first, "queue": "research", "created": False}]
    keys = QueueKeys(key_prefix, "research")
    assert client.zcard(keys.state_index("waiting")) == 1
    assert client.xlen(keys.lane("normal")) == 1
    assert json.loads(client.hget(keys.job(first), "data")) == {"n": 1}


# -- status -------------------------------------------------------------------------------

def test_status_table_lists_every_queue(tgjobs: Run) -> None:
    ok(tgjobs("publish", "research", '{"x": 1}', "--count", "2"))
    lines = ok(tgjobs("status")).strip().splitlines()
    header = lines[0].split()
    for column in ("queue", "state", "waiting", "active", "delayed", "completed", "failed", "dead",
                   "length", "lag", "pending"):
        assert column in header
    rows = {line.split()[0]: dict(zip(header, line.split())) for line in lines[1:]}
    assert set(rows) == set(DEFAULT_POLICIES)
    assert rows["research"]["waiting"] == "2"
    assert rows["research"]["length"] == "2"
    assert rows["research"]["state"] == "running"
    assert rows["reports"]["waiting"] == "0"


def test_status_json_shows_published_counts(tgjobs: Run) -> None:
    ok(tgjobs("publish", "research", '{"x": 1}', "--count", "3"))
    ok(tgjobs("publish", "research", '{"x": 2}', "--priority", "low"))
    ok(tgjobs("publish", "reports", '{"x": 3}', "--delay", "2h"))
    rows = json.loads(ok(tgjobs("status", "--json")))
    by_queue = {r["queue"]: r for r in rows}
    assert set(by_queue) == set(DEFAULT_POLICIES)
    research = by_queue["research"]
    assert research["waiting"] == 4
    assert research["length"] == 4
    assert research["lag"] == 4  # no group yet: every entry is still to be read
    assert (research["active"], research["delayed"], research["completed"], research["failed"],
            research["dead"], research["pending"], research["paused"]) == (0, 0, 0, 0, 0, 0, 0)
    assert research["state"] == "running"
    reports = by_queue["reports"]
    assert (reports["delayed"], reports["waiting"], reports["length"]) == (1, 0, 0)
    assert by_queue["enrichment"]["waiting"] == 0


def test_status_shows_a_paused_queue(tgjobs: Run, redis_url: str, key_prefix: str) -> None:
    ok(tgjobs("publish", "enrichment", '{"x": 1}', "--count", "2"))

    async def pause() -> None:
        settings = Settings(redis_url=redis_url, key_prefix=key_prefix)
        client = connect(settings)
        try:
            await QueueAdmin(client, settings).pause("enrichment")
        finally:
            await client.aclose()

    asyncio.run(pause())
    by_queue = {r["queue"]: r for r in json.loads(ok(tgjobs("status", "--json")))}
    assert by_queue["enrichment"]["state"] == "paused"
    assert (by_queue["enrichment"]["paused"], by_queue["enrichment"]["waiting"]) == (2, 0)
    assert by_queue["research"]["state"] == "running"
    table = {line.split()[0]: line.split() for line in ok(tgjobs("status")).strip().splitlines()[1:]}
    assert table["enrichment"][1] == "paused"


# -- bad input ------------------------------------------------------------------------------

def test_invalid_json_data(tgjobs: Run, client: redis.Redis, key_prefix: str) -> None:
    result = tgjobs("publish", "research", "{not json")
    line = one_line_error(result, 2)
    assert "JSON" in line
    assert result.stdout == ""
    assert not client.exists(QueueKeys(key_prefix, "research").lane("normal"))


def test_unknown_queue(tgjobs: Run) -> None:
    result = tgjobs("publish", "nosuchqueue", "{}")
    line = one_line_error(result, 2)
    assert "nosuchqueue" in line

    result = tgjobs("workers", "--queues", "nosuchqueue")
    line = one_line_error(result, 2)
    assert "nosuchqueue" in line


def test_count_must_be_positive(tgjobs: Run) -> None:
    one_line_error(tgjobs("publish", "research", "{}", "--count", "0"), 2)


def test_invalid_setting_is_named(tgjobs: Run) -> None:
    result = tgjobs("status", env={"QUEUES__RESEARCH__ATTEMPTS": "0"})
    line = one_line_error(result, 2)
    assert "QUEUES__RESEARCH__ATTEMPTS" in line


def test_unreachable_redis_exits_3_without_the_password(tgjobs: Run) -> None:
    port = free_port()
    url = f"redis://:s3cret@127.0.0.1:{port}/0"
    for args in (("status",), ("publish", "research", '{"x": 1}')):
        result = tgjobs(*args, env={"REDIS_URL": url})
        line = one_line_error(result, 3)
        assert "s3cret" not in result.stderr and "s3cret" not in result.stdout
        assert f"127.0.0.1:{port}" in line


# -- workers --------------------------------------------------------------------------------

def test_workers_without_a_handler_exit_1(tgjobs: Run) -> None:
    # A queue added by configuration has no processor, whatever processors/ registers.
    result = tgjobs("workers", "--queues", "nohandler", "--burst",
                    env={"QUEUES__NOHANDLER__ATTEMPTS": "1"})
    assert result.returncode == 1, (result.stdout, result.stderr)
    assert "no handler registered for nohandler" in result.stderr
    assert "no queue to consume" in result.stderr


def test_workers_burst_runs_the_signals_processor(tgjobs: Run, client: redis.Redis, key_prefix: str) -> None:
    data = {"signalId": "sig_cli_1", "signalType": "Email Open", "companyId": "comp_cli",
            "data": {"timestamp": "2024-01-15T10:30:00Z"}}
    job_id = ok(tgjobs("publish", "signals", json.dumps(data))).strip()
    ok(tgjobs("workers", "--queues", "signals", "--burst"))
    status = json.loads(ok(tgjobs("status", "--json")))
    signals = next(row for row in status if row["queue"] == "signals")
    assert (signals["lag"], signals["pending"], signals["dead"]) == (0, 0, 0), (job_id, signals)
    # The processor's effect: the signal is in the company's history.
    (entry,) = client.lrange(CompanyKeys(key_prefix, "comp_cli").signals, 0, -1)
    assert json.loads(entry)["signalId"] == "sig_cli_1"


# -- help -----------------------------------------------------------------------------------

@pytest.mark.parametrize("command", COMMANDS)
def test_help_of_each_command_shows_an_example(tgjobs: Run, command: str) -> None:
    out = ok(tgjobs(command, "--help"))
    assert "example" in out
    assert f"tgjobs {command}" in out


def test_top_level_help_lists_commands_and_examples(tgjobs: Run) -> None:
    out = ok(tgjobs("--help"))
    assert "example" in out
    for command in COMMANDS:
        assert command in out
