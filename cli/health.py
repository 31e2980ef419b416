"""`tgjobs health`: for container health checks. Exit 0 when Redis answers and this
host has a live worker (for each of `--queues`, when given); 1 when not; 3 when Redis
cannot be reached. A worker of this host counts as live when its registry entry has
not expired and its process still exists. What Redis persists and whether it may
evict keys is reported beside, with warnings (streams.durability)."""

from __future__ import annotations

import argparse
import os
import socket
import sys
import time
from typing import Any

from redis.asyncio import Redis

from cli.common import EXIT_FAILED, CommandAdder, check_queues, print_json, print_table, run_with_redis
from config import Settings
from streams.durability import Durability, read_durability
from streams.registry import WorkerInfo, WorkerRegistry


def add_commands(command: CommandAdder) -> None:
    health = command("health", "exit 0 when Redis answers and this host's workers are alive", cmd_health)
    health.add_argument("--queues", help="comma-separated queues that must each have a live worker here")
    health.add_argument("--json", action="store_true", help="print the findings as JSON")


def process_exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's process, but it exists
    return True


def cmd_health(args: argparse.Namespace, settings: Settings) -> int:
    required = check_queues(settings, [q for q in (args.queues or "").split(",") if q])

    async def check(redis: Redis) -> tuple[list[WorkerInfo], Durability]:
        await redis.ping()
        return await WorkerRegistry(redis, settings).live(), await read_durability(redis)

    workers, durability = run_with_redis(settings, check)
    host = socket.gethostname()
    local = [w for w in workers if w.host == host and process_exists(w.pid)]
    served = {q for w in local for q in w.queues}
    missing = [q for q in required if q not in served]
    problems = []
    if not local:
        problems.append(f"no live worker on host {host}")
    elif missing:
        problems.append(f"no live worker on host {host} for {', '.join(missing)}")
    healthy = not problems
    if args.json:
        print_json({"healthy": healthy, "redis": "ok", "persistence": durability.as_dict(), "host": host,
                    "problems": problems, "workers": [w.as_dict() for w in local],
                    "otherHosts": len([w for w in workers if w.host != host])})
    else:
        _print(host, local, problems, durability)
    return 0 if healthy else EXIT_FAILED


def _print(host: str, local: list[WorkerInfo], problems: list[str], durability: Durability) -> None:
    now = time.time() * 1000
    print(f"redis: ok (appendonly {durability.appendonly}, appendfsync {durability.appendfsync or 'unknown'}, "
          f"maxmemory-policy {durability.maxmemory_policy}); host {host}: {len(local)} live worker(s)")
    for warning in durability.warnings():
        print(f"warning: {warning}")
    if local:
        print_table(["worker", "pid", "queues", "in-flight", "heartbeat", "up"],
                    [[w.id, w.pid, ",".join(w.queues), w.total_in_flight, f"{_ago(now - w.heartbeat_at)} ago",
                      _ago(now - w.started_at)] for w in local])
    if problems:
        print(f"tgjobs: unhealthy: {'; '.join(problems)}", file=sys.stderr)
    else:
        print("healthy")


def _ago(ms: Any) -> str:
    seconds = max(int(ms / 1000), 0)
    if seconds < 120:
        return f"{seconds}s"
    if seconds < 7200:
        return f"{seconds // 60}m"
    return f"{seconds // 3600}h"
