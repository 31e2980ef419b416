"""Commands on queues: status, clean, pause, resume, and the dead letters (dlq)."""

from __future__ import annotations

import argparse
import sys
from datetime import UTC, datetime
from typing import Any

from redis.asyncio import Redis

from cli.common import (EXIT_USAGE, CliError, CommandAdder, check_queue, duration_arg, positive, print_json,
                        print_table, progress, run_with_redis)
from cli.database import sink_line
from config import Settings
from processors.outbox_admin import OutboxAdmin, SinkFigures
from streams import QueueAdmin
from streams.keys import queue_of_job

REPLAY_CHUNK = 200  # job ids per replay call behind a progress bar
STATUS_COLUMNS = ["queue", "state", "waiting", "active", "delayed", "completed", "failed", "dead",
                  "length", "lag", "pending"]


def add_commands(command: CommandAdder) -> None:
    status = command("status", "per-queue counts, stream length, lag, pending, dead letters", cmd_status)
    status.add_argument("--json", action="store_true", help="print the figures as JSON")

    clean = command("clean", "delete finished job records older than a grace period", cmd_clean)
    clean.add_argument("queue")
    clean.add_argument("--grace", default="24h", help="only jobs finished longer ago than this (default 24h)")
    clean.add_argument("--limit", type=int, default=100, help="delete at most this many (default 100)")
    clean.add_argument("--type", choices=["completed", "failed"], default="completed",
                       help="which finished jobs (default completed)")
    clean.add_argument("--json", action="store_true", help="print the deleted ids as JSON")

    for name, help in (("pause", "stop handing out a queue's jobs (running ones finish)"),
                       ("resume", "hand out a paused queue's jobs again")):
        sub = command(name, help, cmd_pause if name == "pause" else cmd_resume)
        sub.add_argument("queue")
        sub.add_argument("--json", action="store_true", help="print the outcome as JSON")

    dlq = command("dlq", "list, replay or purge a queue's dead letters", cmd_dlq)
    dlq.add_argument("action", choices=["list", "replay", "purge"])
    dlq.add_argument("queue")
    dlq.add_argument("--ids", help="comma-separated job ids (default: every dead letter)")
    dlq.add_argument("--limit", type=int, default=100, help="list: at most this many (default 100)")
    dlq.add_argument("--after", default="-", help="list: entries after this entry id (paging)")
    dlq.add_argument("--json", action="store_true", help="print the result as JSON")


def cmd_status(args: argparse.Namespace, settings: Settings) -> int:
    async def read(redis: Redis) -> tuple[Any, SinkFigures | None]:
        sink = await OutboxAdmin(redis, settings).figures() if settings.sink_enabled else None
        return await QueueAdmin(redis, settings).all_status(), sink

    figures, sink = run_with_redis(settings, read)
    rows = [{"queue": s.queue, "state": "paused" if s.paused else "running", **s.figures()} for s in figures]
    if args.json:
        print_json(rows)
    else:
        print_table(STATUS_COLUMNS, [[row[c] for c in STATUS_COLUMNS] for row in rows])
        if sink is not None:
            print(sink_line(sink))
    return 0


def cmd_clean(args: argparse.Namespace, settings: Settings) -> int:
    check_queue(settings, args.queue)
    grace = duration_arg("--grace", args.grace)
    positive("--limit", args.limit)
    removed = run_with_redis(settings, lambda redis: QueueAdmin(redis, settings).clean(
        args.queue, grace, args.limit, args.type))
    if args.json:
        print_json({"queue": args.queue, "type": args.type, "removed": removed})
    else:
        print(f"{args.queue}: deleted {len(removed)} {args.type} job(s) finished more than {args.grace} ago")
    return 0


def _set_paused(args: argparse.Namespace, settings: Settings, paused: bool) -> int:
    check_queue(settings, args.queue)

    async def act(redis: Redis) -> None:
        admin = QueueAdmin(redis, settings)
        await (admin.pause(args.queue) if paused else admin.resume(args.queue))

    run_with_redis(settings, act)
    if args.json:
        print_json({"queue": args.queue, "paused": paused})
    else:
        print(f"{args.queue} {'paused' if paused else 'resumed'}")
    return 0


def cmd_pause(args: argparse.Namespace, settings: Settings) -> int:
    return _set_paused(args, settings, True)


def cmd_resume(args: argparse.Namespace, settings: Settings) -> int:
    return _set_paused(args, settings, False)


def _ids(args: argparse.Namespace) -> list[str] | None:
    if args.ids is None:
        return None
    ids = [i.strip() for i in args.ids.split(",") if i.strip()]
    if not ids:
        raise CliError("--ids names no job id", EXIT_USAGE)
    wrong = [i for i in ids if queue_of_job(i) != args.queue]
    if wrong:
        raise CliError(f"--ids: {wrong[0]!r} is not a job id of queue {args.queue}", EXIT_USAGE)
    return ids


def _time(ms: int | None) -> str:
    if not ms:
        return "-"
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%d %H:%M:%S")


def cmd_dlq(args: argparse.Namespace, settings: Settings) -> int:
    check_queue(settings, args.queue)
    ids = _ids(args)
    if args.action == "list":
        return _dlq_list(args, settings, ids)
    if args.action == "purge":
        purged = run_with_redis(settings, lambda redis: QueueAdmin(redis, settings).purge(args.queue, ids))
        if args.json:
            print_json({"queue": args.queue, "action": "purge", "purged": purged})
        else:
            print(f"{args.queue}: purged {purged} dead letter(s)")
        return 0
    replayed = run_with_redis(settings, lambda redis: _replay(redis, settings, args.queue, ids))
    if args.json:
        print_json({"queue": args.queue, "action": "replay", "replayed": replayed})
    else:
        for job_id in replayed:
            print(job_id)
        print(f"{args.queue}: replayed {len(replayed)} dead letter(s)", file=sys.stderr)
    return 0


async def _replay(redis: Redis, settings: Settings, queue: str, ids: list[str] | None) -> list[str]:
    """One replay when piped; on a terminal, in chunks of job ids behind a progress bar."""
    admin = QueueAdmin(redis, settings)
    if not sys.stdout.isatty():
        return await admin.replay(queue, ids)
    if ids is None:
        ids, after = [], "-"
        while page := await admin.dead_letters(queue, after, 500):
            ids += [d.job_id for d in page]
            after = page[-1].entry_id
        ids = list(dict.fromkeys(ids))
    replayed: list[str] = []
    with progress(f"replaying {queue}", len(ids)) as bar:
        for start in range(0, len(ids), REPLAY_CHUNK):
            chunk = ids[start:start + REPLAY_CHUNK]
            replayed += await admin.replay(queue, chunk)
            bar.advance(len(chunk))
    return replayed


def _dlq_list(args: argparse.Namespace, settings: Settings, ids: list[str] | None) -> int:
    positive("--limit", args.limit)

    async def letters(redis: Redis) -> Any:
        page = await QueueAdmin(redis, settings).dead_letters(args.queue, args.after, args.limit)
        return [d for d in page if ids is None or d.job_id in ids]

    found = run_with_redis(settings, letters)
    if args.json:
        print_json([{"entryId": d.entry_id, "jobId": d.job_id, "name": d.name, "data": d.data, "error": d.error,
                     "errorType": d.error_type, "attempts": d.attempts, "stalls": d.stalls,
                     "createdAt": d.created_at, "failedAt": d.failed_at} for d in found])
        return 0
    print_table(["entry", "job", "failed", "attempts", "error"],
                [[d.entry_id, d.job_id, _time(d.failed_at), d.attempts,
                  f"{d.error_type}: {d.error}"[:120]] for d in found])
    return 0
