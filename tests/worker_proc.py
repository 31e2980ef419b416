"""A worker process for tests that need real processes (SIGKILL, SIGTERM, two workers).

    python tests/worker_proc.py REDIS_URL KEY_PREFIX QUEUE [--lock-timeout S] [--concurrency N]
        [--rate N/PERIOD] [--grace S] [--backoff-delay S] [--keep-completed N] [--timeout S]

Its handler reads the job's data: {"sleep": seconds, "sleep_redelivered": seconds
instead on a run after a stall, "kill": true (SIGKILL itself), "fail": true}. It
records every start in the list `<prefix>:test:starts` as "<job id> <server time in
ms>" and its effect once per job id with SET NX on
`<prefix>:test:effect:<job id>`, so tests can count runs and effects apart.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import sys

from config import DEFAULT_POLICIES, Settings
from streams import JobContext, run_workers


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("redis_url")
    parser.add_argument("prefix")
    parser.add_argument("queue")
    parser.add_argument("--lock-timeout", type=float, default=30)
    parser.add_argument("--concurrency", type=int, default=5)
    parser.add_argument("--rate", default=None)
    parser.add_argument("--grace", type=float, default=30)
    parser.add_argument("--backoff-delay", type=float, default=0.1)
    parser.add_argument("--keep-completed", type=int, default=100)
    parser.add_argument("--timeout", type=float, default=None, help="a run's limit (default: the policy's)")
    args = parser.parse_args()
    row = {"lock_timeout": args.lock_timeout, "concurrency": args.concurrency,
           "backoff_delay": args.backoff_delay, "rate_limit": args.rate,
           "keep_completed": args.keep_completed}
    if args.timeout is not None:
        row["timeout"] = args.timeout
    if args.queue == "jobs":  # the tests' regular queue: the signals row with job records
        row = {**DEFAULT_POLICIES["signals"].model_dump(), "records": True, **row}
    settings = Settings(redis_url=args.redis_url, key_prefix=args.prefix, shutdown_grace=args.grace,
                        read_block=1, queues={args.queue: row})
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format=f"worker {os.getpid()} %(levelname)s %(message)s")

    async def handler(ctx: JobContext) -> dict[str, str]:
        redis = ctx._redis
        seconds, micros = await redis.time()
        await redis.rpush(f"{args.prefix}:test:starts", f"{ctx.id} {seconds * 1000 + micros // 1000}")
        data = ctx.data or {}
        if data.get("kill"):
            os.kill(os.getpid(), signal.SIGKILL)
        seconds = data.get("sleep_redelivered", data.get("sleep")) if ctx.stalls else data.get("sleep")
        if seconds:
            await asyncio.sleep(seconds)
        if data.get("fail"):
            raise RuntimeError("asked to fail")
        await redis.set(f"{args.prefix}:test:effect:{ctx.id}", os.getpid(), nx=True)
        return {"pid": str(os.getpid())}

    asyncio.run(run_workers(settings, {args.queue: handler}))


if __name__ == "__main__":
    main()
