"""The `tgjobs` command: run workers, publish jobs, show queue status, run a local Redis.

Exit codes: 0 success, 1 the operation failed, 2 bad usage or settings, 3 Redis
unreachable. Errors are one line on stderr; secrets never appear in them.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal
import sys
from collections.abc import Coroutine, Iterator
from typing import Any

import orjson
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from cli.embedded_redis import EmbeddedRedis, EmbeddedRedisError
from config import Settings, SettingsError, load_settings
from streams import InvalidJob, JobSpec, Producer, QueueAdmin, StreamsError, connect, run_workers

EXIT_FAILED, EXIT_USAGE, EXIT_UNREACHABLE = 1, 2, 3

EXAMPLES = {
    "workers": "tgjobs workers --queues research,signals --concurrency 8",
    "publish": "tgjobs publish research '{\"companyId\": \"comp_123\", \"companyName\": \"Acme\"}' --priority high",
    "status": "tgjobs status --json",
    "up": "tgjobs up",
    "redis": "tgjobs redis",
    "api": "tgjobs api --host 0.0.0.0 --port 3000",
}


class CliError(Exception):
    def __init__(self, message: str, code: int = EXIT_FAILED) -> None:
        super().__init__(message)
        self.code = code


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tgjobs", description="Jobs and events on Redis Streams.",
        epilog="examples:\n" + "\n".join(f"  {e}" for e in EXAMPLES.values()),
        formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name: str, help: str) -> argparse.ArgumentParser:
        return commands.add_parser(name, help=help, description=help,
                                   epilog=f"example:\n  {EXAMPLES[name]}",
                                   formatter_class=argparse.RawDescriptionHelpFormatter)

    workers = command("workers", "run workers for the queues that have a handler")
    workers.add_argument("--queues", help="comma-separated queues (default: every queue with a handler)")
    workers.add_argument("--concurrency", type=int, help="jobs run at once per queue (default: the policy's)")
    workers.add_argument("--burst", action="store_true", help="exit once the queues are drained")

    publish = command("publish", "add jobs to a queue")
    publish.add_argument("queue")
    publish.add_argument("data", help="the job's data as JSON")
    publish.add_argument("--priority", choices=["high", "normal", "low"])
    publish.add_argument("--count", type=int, default=1, help="add this many copies (default 1)")
    publish.add_argument("--delay", default="0", help="run after this long: 90s, 15m, 2h")
    publish.add_argument("--idempotency-key", help="the same key within its window adds nothing")
    publish.add_argument("--json", action="store_true", help="print the result as JSON")

    status = command("status", "per-queue counts, stream length, lag, pending, dead letters")
    status.add_argument("--json", action="store_true", help="print the figures as JSON")

    command("up", "start a local Redis when REDIS_URL is unset, then every worker and the HTTP API")
    command("redis", "run the embedded Redis in the foreground (append-only, under the data dir)")

    api = command("api", "serve the HTTP API until SIGTERM or Ctrl+C")
    api.add_argument("--host", help="address to bind (default: API_HOST, 127.0.0.1)")
    api.add_argument("--port", type=int, help="port to listen on (default: API_PORT, 3000)")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        settings = load_settings()
        logging.basicConfig(level=settings.log_level, stream=sys.stderr,
                            format="%(asctime)s %(levelname)s %(name)s: %(message)s")
        return COMMANDS[args.command](args, settings)
    except SettingsError as exc:
        return _fail(str(exc), EXIT_USAGE)
    except CliError as exc:
        return _fail(str(exc), exc.code)
    except KeyboardInterrupt:
        return 130


def _fail(message: str, code: int) -> int:
    print(f"tgjobs: {message}", file=sys.stderr)
    return code


async def _with_redis(settings: Settings, action: Any) -> Any:
    redis = connect(settings)
    try:
        return await action(redis)
    except (RedisConnectionError, RedisTimeoutError, OSError) as exc:
        raise CliError(f"cannot reach Redis at {settings.redacted_redis_url()}: {exc}",
                       EXIT_UNREACHABLE) from None
    except StreamsError as exc:
        raise CliError(str(exc), EXIT_USAGE if isinstance(exc, InvalidJob) else EXIT_FAILED) from None
    finally:
        await redis.aclose()


# -- commands -----------------------------------------------------------------------

def cmd_workers(args: argparse.Namespace, settings: Settings) -> int:
    queues = _consumed_queues(args.queues, settings, args.concurrency)
    asyncio.run(_consume(settings, queues, concurrency=args.concurrency, burst=args.burst))
    return 0


def _consumed_queues(chosen: str | None, settings: Settings, concurrency: int | None = None) -> list[str]:
    """The queues `--queues` chose (default: every configured one) that have a handler;
    says which have none."""
    from processors import HANDLED_QUEUES

    wanted = chosen.split(",") if chosen else list(settings.queues)
    unknown = [q for q in wanted if q not in settings.queues]
    if unknown:
        raise CliError(f"unknown queue(s): {', '.join(unknown)}; configured: {', '.join(settings.queues)}",
                       EXIT_USAGE)
    if concurrency is not None and concurrency < 1:
        raise CliError("--concurrency must be at least 1", EXIT_USAGE)
    handled = [q for q in wanted if q in HANDLED_QUEUES]
    missing = [q for q in wanted if q not in HANDLED_QUEUES]
    if missing:
        print(f"tgjobs: no handler registered for {', '.join(missing)}; not consuming "
              f"{'it' if len(missing) == 1 else 'them'}", file=sys.stderr)
    if not handled:
        raise CliError("no queue to consume: none of the chosen queues has a handler")
    return handled


async def _consume(settings: Settings, queues: list[str], *, concurrency: int | None = None,
                   burst: bool = False) -> None:
    """Runs the processors of `queues` until a signal (or, with `burst`, until drained),
    and, beside the reports workers, the loop that fires due report schedules."""
    from processors import build_handlers
    from processors.schedules import Schedules

    redis = connect(settings)
    try:
        handlers = {q: h for q, h in build_handlers(settings, redis).items() if q in queues}
        stopping = asyncio.Event()
        companions = [] if burst or "reports" not in handlers else [Schedules(settings, redis).run(stopping)]

        async def workers() -> None:
            try:
                await run_workers(settings, handlers, concurrency=concurrency, burst=burst)
            finally:
                stopping.set()

        await asyncio.gather(workers(), *companions)
    finally:
        await redis.aclose()


def cmd_publish(args: argparse.Namespace, settings: Settings) -> int:
    from config import parse_duration

    try:
        data = orjson.loads(args.data)
    except orjson.JSONDecodeError as exc:
        raise CliError(f"data is not valid JSON: {exc}", EXIT_USAGE) from None
    try:
        delay = parse_duration(args.delay)
    except ValueError as exc:
        raise CliError(f"--delay: {exc}", EXIT_USAGE) from None
    if args.count < 1:
        raise CliError("--count must be at least 1", EXIT_USAGE)
    if args.queue not in settings.queues:
        raise CliError(f"unknown queue {args.queue!r}; configured: {', '.join(settings.queues)}", EXIT_USAGE)
    specs = [JobSpec(data, priority=args.priority, delay=delay, idempotency_key=args.idempotency_key)
             for _ in range(args.count)]

    async def publish(redis: Any) -> Any:
        return await Producer(redis, settings).add_many(args.queue, specs)

    added = asyncio.run(_with_redis(settings, publish))
    if args.json:
        print(orjson.dumps([{"id": a.id, "queue": a.queue, "created": a.created} for a in added]).decode())
    else:
        for job in added:
            print(job.id if job.created else f"{job.id} (already added with this idempotency key)")
    return 0


def cmd_status(args: argparse.Namespace, settings: Settings) -> int:
    async def status(redis: Any) -> Any:
        return await QueueAdmin(redis, settings).all_status()

    figures = asyncio.run(_with_redis(settings, status))
    rows = [{"queue": s.queue, "state": "paused" if s.paused else "running", **s.counts,
             "dead": s.dead, "length": s.length, "lag": s.lag, "pending": s.pending} for s in figures]
    if args.json:
        print(orjson.dumps(rows).decode())
        return 0
    columns = ["queue", "state", "waiting", "active", "delayed", "completed", "failed", "dead",
               "length", "lag", "pending"]
    table = [columns] + [[_cell(row[c]) for c in columns] for row in rows]
    widths = [max(len(r[i]) for r in table) for i in range(len(columns))]
    for r in table:
        print("  ".join(cell.ljust(w) if i == 0 else cell.rjust(w) for i, (cell, w) in enumerate(zip(r, widths))))
    return 0


def _cell(value: Any) -> str:
    return "-" if value is None else str(value)


@contextlib.contextmanager
def _redis_for(settings: Settings) -> Iterator[Settings]:
    """The settings to run with: unchanged when REDIS_URL is set, else pointing at an
    embedded Redis that lives as long as the context."""
    if settings.redis_url is not None:
        yield settings
        return
    server = EmbeddedRedis(settings.data_dir / "redis", port=settings.embedded_redis_port,
                           appendonly=True, install=True)
    try:
        server.start()
    except EmbeddedRedisError as exc:
        raise CliError(str(exc)) from None
    logging.getLogger("tgjobs").info("embedded Redis on %s (append-only file in %s)", server.url,
                                     server.data_dir)
    try:
        yield settings.model_copy(update={"redis_url": server.url})
    finally:
        server.stop()


def cmd_up(args: argparse.Namespace, settings: Settings) -> int:
    with _redis_for(settings) as running:
        _run_api(_up(running, _consumed_queues(None, running)))
    return 0


async def _up(settings: Settings, queues: list[str]) -> None:
    from api import running_api

    async with running_api(settings):
        await _consume(settings, queues)


def cmd_api(args: argparse.Namespace, settings: Settings) -> int:
    from api import serve

    if args.port is not None and not 1 <= args.port <= 65535:
        raise CliError("--port must be from 1 to 65535", EXIT_USAGE)
    _run_api(serve(settings, args.host, args.port))
    return 0


def _run_api(main: Coroutine[Any, Any, None]) -> None:
    from api.server import ServeError
    from api.tokens import TokenFileError

    try:
        asyncio.run(main)
    except TokenFileError as exc:
        raise CliError(str(exc), EXIT_USAGE) from None
    except ServeError as exc:
        raise CliError(str(exc)) from None


def cmd_redis(args: argparse.Namespace, settings: Settings) -> int:
    with _redis_for(settings.model_copy(update={"redis_url": None})) as running:
        print(f"embedded Redis at {running.redis_url}; Ctrl+C stops it", file=sys.stderr)
        _wait_for_signal()
    return 0


def _wait_for_signal() -> None:
    """Blocks until SIGINT or SIGTERM; both unwind normally, so a child Redis is
    stopped rather than orphaned."""
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    try:
        signal.pause()
    except KeyboardInterrupt:
        pass


COMMANDS = {"workers": cmd_workers, "publish": cmd_publish, "status": cmd_status, "up": cmd_up,
            "redis": cmd_redis, "api": cmd_api}

if __name__ == "__main__":
    sys.exit(main())
