"""Logs: one line per job start (debug), progress update (debug), completion with its
duration, failure with its error; text by default, JSON lines with LOG_FORMAT=json; secrets never appear (a Redis
URL with a password, logged by the engine itself, comes out redacted)."""

from __future__ import annotations

import io
import json
import logging
from typing import Any

import pytest

from cli.logs import REDACTED, Redactor, configure_logging, secret_values
from config import Settings
from streams import JobContext, JobSpec, Producer, QueueWorker, connect

PASSWORD = "s3cr3t-Pa55word"
LEAKY_URL = f"redis://app:{PASSWORD}@redis.internal:6379/0"


async def run_queue(settings: Settings, handler: Any, specs: list[JobSpec]) -> None:
    redis = connect(settings)
    try:
        await Producer(redis, settings).add_many("jobs", specs)
    finally:
        await redis.aclose()
    await QueueWorker(settings, "jobs", handler).run(burst=True)


async def handler(ctx: JobContext) -> Any:
    if ctx.data.get("fail"):
        raise ConnectionError(f"cannot reach {LEAKY_URL} (password={PASSWORD})")
    await ctx.progress(50)
    return {"ok": True}


async def test_json_lines_for_start_completion_and_failure_without_secrets(
        make_settings: Any, restore_logging: None) -> None:
    settings = make_settings(jobs={"attempts": 1}, log_format="json", log_level="DEBUG",
                             api_tokens=[{"name": "ops", "role": "admin", "token": "tok-abcdefghijklmnop-1234"}])
    out = io.StringIO()
    configure_logging(settings, out)
    await run_queue(settings, handler, [JobSpec({"n": 1}), JobSpec({"fail": True})])
    logging.getLogger("tgjobs").info("api tokens: tok-abcdefghijklmnop-1234; redis at %s", LEAKY_URL)
    text = out.getvalue()
    assert PASSWORD not in text and "tok-abcdefghijklmnop-1234" not in text, text
    lines = [json.loads(line) for line in text.splitlines()]  # every line is one JSON object
    started = [line for line in lines if line["msg"].endswith("started (attempt 1)")]
    assert len(started) == 2 and all(line["level"] == "DEBUG" and line["queue"] == "jobs" for line in started)
    (progress,) = [line for line in lines if line["msg"].endswith(" progress 50")]
    assert progress["level"] == "DEBUG" and progress["progress"] == "50"
    (completed,) = [line for line in lines if " completed in " in line["msg"]]
    assert completed["level"] == "INFO" and completed["duration_ms"] >= 0 and completed["job"].startswith("jobs-")
    (failed,) = [line for line in lines if "dead-lettered" in line["msg"]]
    assert failed["level"] == "ERROR" and failed["outcome"] == "dead"
    assert failed["error"].startswith("ConnectionError: cannot reach redis://app:***@redis.internal:6379/0")
    assert f"password={REDACTED}" in failed["error"]
    assert "redis://app:***@redis.internal" in lines[-1]["msg"] and "tokens: ***" in lines[-1]["msg"]


async def test_text_lines_by_default(make_settings: Any, restore_logging: None) -> None:
    settings = make_settings(jobs={"attempts": 1})
    assert settings.log_format == "text"
    out = io.StringIO()
    configure_logging(settings, out)
    await run_queue(settings, handler, [JobSpec({"n": 1}), JobSpec({"fail": True})])
    text = out.getvalue()
    assert " INFO streams.worker: jobs: job jobs-" in text and " completed in " in text
    assert " ERROR streams.worker: " in text and "redis://app:***@redis.internal" in text
    assert "started (attempt" not in text  # debug only
    assert PASSWORD not in text
    with pytest.raises(json.JSONDecodeError):
        json.loads(text.splitlines()[0])


def test_tracebacks_and_arguments_are_redacted(restore_logging: None) -> None:
    settings = Settings(redis_url=LEAKY_URL, redis_password="another-secret-value")
    assert secret_values(settings) >= {PASSWORD, "another-secret-value"}
    out = io.StringIO()
    configure_logging(settings, out)
    log = logging.getLogger("tgjobs.test")
    try:
        raise RuntimeError(f"connect failed: {LEAKY_URL}")
    except RuntimeError:
        log.exception("lost Redis; the password another-secret-value is %s", "in the args")
    log.warning("header Authorization: Bearer abc.def.ghi and %s", {"url": "rediss://:pw-in-dict@h:6380"})
    text = out.getvalue()
    for secret in (PASSWORD, "another-secret-value", "abc.def.ghi", "pw-in-dict"):
        assert secret not in text, text
    assert "Traceback" in text and "redis://app:***@redis.internal" in text
    assert "Bearer ***" in text and "rediss://:***@h:6380" in text


def test_redactor_leaves_ordinary_text_alone() -> None:
    redact = Redactor()
    for line in ("research: job research-01JD2X5V3G8K6M7W4Q9T1B0C2E completed in 12 ms",
                 "rejected GET /api/jobs from 127.0.0.1: unknown token",
                 "Redis at redis://localhost:6379 is unavailable"):
        assert redact(line) == line


def test_log_format_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LOG_FORMAT", "JSON")
    assert Settings().log_format == "json"
    monkeypatch.setenv("LOG_FORMAT", "xml")
    with pytest.raises(Exception, match="log_format"):
        Settings()


def test_cli_writes_json_lines_with_log_format_json(redis_url: str, key_prefix: str) -> None:
    import os
    import subprocess
    import sys
    from pathlib import Path

    fields = {name.lower() for name in Settings.model_fields}
    env = {k: v for k, v in os.environ.items()
           if not k.upper().startswith("QUEUES__") and k.upper() != "TGJOBS_CONFIG" and k.lower() not in fields}
    env.update(REDIS_URL=redis_url, KEY_PREFIX=key_prefix, LOG_FORMAT="json")
    result = subprocess.run([sys.executable, "-m", "cli.main", "workers", "--queues", "signals", "--burst"],
                            cwd=Path(__file__).parents[1], env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    lines = [json.loads(line) for line in result.stderr.splitlines()]
    assert any("consuming signals" in line["msg"] for line in lines), lines
