"""Commands on jobs: publish, job (state, progress, logs, result), retry, remove."""

from __future__ import annotations

import argparse
from datetime import UTC, datetime
from typing import Any

import orjson
from redis.asyncio import Redis

from cli.common import (EXIT_USAGE, CliError, CommandAdder, check_job_id, check_queue, duration_arg, positive,
                        print_json, progress, run_with_redis)
from config import Settings
from streams import JobSpec, Producer, QueueAdmin
from streams.listing import reported_state
from streams.producer import BATCH_CHUNK


def add_commands(command: CommandAdder) -> None:
    publish = command("publish", "add jobs to a queue", cmd_publish)
    publish.add_argument("queue")
    publish.add_argument("data", help="the job's data as JSON")
    publish.add_argument("--priority", choices=["high", "normal", "low"])
    publish.add_argument("--count", type=int, default=1, help="add this many copies (default 1)")
    publish.add_argument("--delay", default="0", help="run after this long: 90s, 15m, 2h")
    publish.add_argument("--idempotency-key", help="the same key within its window adds nothing")
    publish.add_argument("--json", action="store_true", help="print the result as JSON")

    job = command("job", "one job: state, progress, attempts, logs, result or error", cmd_job)
    job.add_argument("id", help="the job id, e.g. research-01JD2X5V3G8K6M7W4Q9T1B0C2E")
    job.add_argument("--logs", type=int, default=100, metavar="N", help="show the newest N log lines (default 100)")
    job.add_argument("--json", action="store_true", help="print the job as JSON")

    retry = command("retry", "run a failed job again with fresh attempts", cmd_retry)
    retry.add_argument("id")
    retry.add_argument("--json", action="store_true", help="print the outcome as JSON")

    remove = command("remove", "delete a job (not while it runs)", cmd_remove)
    remove.add_argument("id")
    remove.add_argument("--json", action="store_true", help="print the outcome as JSON")


def cmd_publish(args: argparse.Namespace, settings: Settings) -> int:
    try:
        data = orjson.loads(args.data)
    except orjson.JSONDecodeError as exc:
        raise CliError(f"data is not valid JSON: {exc}", EXIT_USAGE) from None
    delay = duration_arg("--delay", args.delay)
    positive("--count", args.count)
    check_queue(settings, args.queue)
    specs = [JobSpec(data, priority=args.priority, delay=delay, idempotency_key=args.idempotency_key)
             for _ in range(args.count)]

    async def publish(redis: Redis) -> Any:
        producer = Producer(redis, settings)
        added = []
        with progress(f"publishing to {args.queue}", len(specs)) as bar:
            for start in range(0, len(specs), BATCH_CHUNK):
                chunk = specs[start:start + BATCH_CHUNK]
                added += await producer.add_many(args.queue, chunk)
                bar.advance(len(chunk))
        return added

    added = run_with_redis(settings, publish)
    if args.json:
        print_json([{"id": a.id, "queue": a.queue, "created": a.created} for a in added])
    else:
        for job in added:
            print(job.id if job.created else f"{job.id} (already added with this idempotency key)")
    return 0


def _time(ms: int | None) -> str:
    if ms is None:
        return "-"
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def cmd_job(args: argparse.Namespace, settings: Settings) -> int:
    check_job_id(settings, args.id)
    if args.logs < 0:
        raise CliError("--logs must be 0 or more", EXIT_USAGE)

    async def detail(redis: Redis) -> Any:
        return await QueueAdmin(redis, settings).job_detail(args.id, args.logs)

    d = run_with_redis(settings, detail)
    job = d.job
    state = reported_state(job, d.paused)
    if args.json:
        print_json({**job.model_dump(mode="json"), "state": str(state), "logs": d.logs})
        return 0
    rows = [("id", job.id), ("queue", job.queue), ("state", state), ("lane", job.lane),
            ("progress", orjson.dumps(job.progress).decode()),
            ("attempts", f"{job.attemptsMade}/{job.maxAttempts}"), ("stalls", f"{job.stalls}/{job.maxStalls}"),
            ("created", _time(job.createdAt)), ("started", _time(job.processedAt)),
            ("finished", _time(job.finishedAt))]
    if job.dueAt is not None:
        rows.append(("due", _time(job.dueAt)))
    if job.duration is not None:
        rows.append(("duration", f"{job.duration} ms"))
    rows.append(("data", orjson.dumps(job.data).decode()))
    if job.returnvalue is not None:
        rows.append(("result", orjson.dumps(job.returnvalue).decode()))
    if job.failedReason:
        rows.append(("error", f"{job.errorType or 'Error'}: {job.failedReason}"))
    width = max(len(name) for name, _ in rows)
    for name, value in rows:
        print(f"{name.ljust(width)}  {value}")
    if d.logs:
        print("logs:")
        for line in d.logs:
            print(f"  {line}")
    return 0


def cmd_retry(args: argparse.Namespace, settings: Settings) -> int:
    return _act_on_job(args, settings, "retry", "queued again")


def cmd_remove(args: argparse.Namespace, settings: Settings) -> int:
    return _act_on_job(args, settings, "remove", "removed")


def _act_on_job(args: argparse.Namespace, settings: Settings, action: str, done: str) -> int:
    """Runs QueueAdmin.retry or .remove on the job `args.id` and says so."""
    check_job_id(settings, args.id)
    run_with_redis(settings, lambda redis: getattr(QueueAdmin(redis, settings), action)(args.id))
    if args.json:
        print_json({"id": args.id, "action": action, "done": True})
    else:
        print(f"{args.id} {done}")
    return 0
