"""Commands that run until stopped: workers, up (Redis + API + workers), api, redis.
`--processes N` runs the workers in N supervised processes (cli.supervisor)."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import signal
import sys
from collections.abc import Coroutine, Iterator
from typing import Any

from cli.common import EXIT_USAGE, CliError, CommandAdder, check_queues
from cli.database import require_current_schema
from cli.embedded_redis import EmbeddedRedis, EmbeddedRedisError
from cli.metrics import add_metrics_port, metrics_port, serve_metrics
from cli.supervisor import Supervisor, WorkerSpec
from config import Settings
from streams import connect, run_workers
from streams.server_version import RedisTooOld, check_redis_version

log = logging.getLogger("tgjobs")


def add_commands(command: CommandAdder) -> None:
    workers = command("workers", "run workers for the queues that have a handler", cmd_workers)
    workers.add_argument("--queues", help="comma-separated queues (default: every queue with a handler)")
    workers.add_argument("--concurrency", type=int, help="jobs run at once per queue (default: the policy's)")
    workers.add_argument("--burst", action="store_true", help="exit once the queues are drained")
    add_processes(workers)
    add_metrics_port(workers)
    workers.set_defaults(traced=True)

    up = command("up", "start a local Redis when REDIS_URL is unset, then every worker and the HTTP API", cmd_up)
    up.add_argument("--host", help="address the API binds (default: API_HOST, 127.0.0.1)")
    up.add_argument("--port", type=int, help="port the API listens on (default: API_PORT, 3000)")
    up.add_argument("--queues", help="comma-separated queues to consume (default: every queue with a handler)")
    add_processes(up)
    up.set_defaults(traced=True)
    redis = command("redis", "run the embedded Redis in the foreground (append-only, under the data dir)", cmd_redis)
    redis.add_argument("--stop", action="store_true",
                       help="stop the embedded Redis that `tgjobs redis` or `tgjobs up` started (SHUTDOWN)")

    api = command("api", "serve the HTTP API until SIGTERM or Ctrl+C", cmd_api)
    api.add_argument("--host", help="address to bind (default: API_HOST, 127.0.0.1)")
    api.add_argument("--port", type=int, help="port to listen on (default: API_PORT, 3000)")
    api.set_defaults(traced=True)


MAX_PROCESSES = 256


def add_processes(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--processes", metavar="N", default="1",
                        help="worker processes, each its own consumer, kept running by a supervisor "
                             "(default 1: this process; auto: one per CPU)")


def process_count(text: str) -> int:
    """`--processes`: a whole number from 1 to MAX_PROCESSES, or `auto` (the CPUs this
    process may run on)."""
    if text.strip().lower() == "auto":
        return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    try:
        count = int(text)
    except ValueError:
        raise CliError(f"--processes must be a whole number or 'auto', not {text!r}", EXIT_USAGE) from None
    if not 1 <= count <= MAX_PROCESSES:
        raise CliError(f"--processes must be from 1 to {MAX_PROCESSES}, not {count}", EXIT_USAGE)
    return count


def cmd_workers(args: argparse.Namespace, settings: Settings) -> int:
    queues = consumed_queues(args.queues, settings, args.concurrency)
    processes = process_count(args.processes)
    require_current_schema(settings)
    port = metrics_port(args, settings, processes)
    warn_at_start(settings)
    if processes == 1:
        serve_metrics(port)
        run_checked(consume(settings, queues, concurrency=args.concurrency, burst=args.burst))
    else:
        spec = WorkerSpec(settings, tuple(queues), args.concurrency, args.burst, port)
        asyncio.run(Supervisor(spec, processes).run())
    return 0


def warn_at_start(settings: Settings) -> None:
    for warning in settings.start_warnings():
        log.warning("%s", warning)


def run_checked(main: Coroutine[Any, Any, None]) -> None:
    """Runs a process's main coroutine; a Redis too old to run on is a configuration error."""
    try:
        asyncio.run(main)
    except RedisTooOld as exc:
        raise CliError(str(exc), EXIT_USAGE) from None


def consumed_queues(chosen: str | None, settings: Settings, concurrency: int | None = None) -> list[str]:
    """The queues `--queues` chose (default: every configured one) that a job kind
    consumes; says which have none."""
    from processors.kinds import KINDS

    wanted = check_queues(settings, chosen.split(",") if chosen else list(settings.queues))
    if concurrency is not None and concurrency < 1:
        raise CliError("--concurrency must be at least 1", EXIT_USAGE)
    handled = [q for q in wanted if q in KINDS.by_queue]
    missing = [q for q in wanted if q not in KINDS.by_queue]
    if missing:
        print(f"tgjobs: no handler registered for {', '.join(missing)}; not consuming "
              f"{'it' if len(missing) == 1 else 'them'}", file=sys.stderr)
    if not handled:
        raise CliError("no queue to consume: none of the chosen queues has a handler")
    return handled


async def consume(settings: Settings, queues: list[str], *, concurrency: int | None = None,
                  burst: bool = False) -> None:
    """Runs the processors of `queues` until a signal (or, with `burst`, until drained),
    and beside them their kinds' companion tasks (the reports kind's schedule loop) and,
    with a DATABASE_URL, the PostgreSQL sink."""
    from processors import build_handlers
    from processors.kinds import KINDS

    redis = connect(settings)
    try:
        await check_redis_version(redis)
        handlers = build_handlers(settings, redis, queues)
        stopping = asyncio.Event()
        companions = [] if burst else [companion(settings, redis, stopping) for queue in handlers
                                       for companion in KINDS.by_queue[queue].companions]
        if settings.sink_enabled and not burst:
            from sink import Sink

            companions.append(Sink(settings, redis).run(stopping))

        async def workers() -> None:
            try:
                await run_workers(settings, handlers, concurrency=concurrency, burst=burst)
            finally:
                stopping.set()

        await asyncio.gather(workers(), *companions)
    finally:
        await redis.aclose()


def start_embedded(settings: Settings) -> EmbeddedRedis:
    """The embedded Redis, started with append-only persistence under the data dir."""
    server = EmbeddedRedis(settings.data_path() / "redis", port=settings.embedded_redis_port,
                           appendonly=True, install=True)
    try:
        server.start()
    except EmbeddedRedisError as exc:
        raise CliError(str(exc)) from None
    return server


@contextlib.contextmanager
def redis_for(settings: Settings) -> Iterator[Settings]:
    """The settings to run with: unchanged when REDIS_URL (or REDIS_SENTINELS) is set,
    else pointing at an embedded Redis that lives as long as the context."""
    if settings.redis_url is not None or settings.redis_sentinel_mode:
        yield settings
        return
    server = start_embedded(settings)
    log.info("embedded Redis on %s (append-only file in %s)", server.url, server.data_dir)
    try:
        yield settings.model_copy(update={"redis_url": server.url, "redis_username": None, "redis_password": None})
    finally:
        server.stop()


def cmd_up(args: argparse.Namespace, settings: Settings) -> int:
    check_port(args.port)
    queues = consumed_queues(args.queues, settings)  # bad arguments fail before Redis starts
    processes = process_count(args.processes)
    warn_at_start(settings)
    require_current_schema(settings)
    with redis_for(settings) as running:
        run_api(_up(running, queues, args.host, args.port, processes))
    return 0


async def _up(settings: Settings, queues: list[str], host: str | None, port: int | None, processes: int) -> None:
    """The API in this process; the workers too, or in `processes` supervised children."""
    from api import running_api

    async with running_api(settings, host, port):
        if processes == 1:
            await consume(settings, queues)
        else:
            await Supervisor(WorkerSpec(settings, tuple(queues)), processes).run()


def check_port(port: int | None) -> None:
    if port is not None and not 1 <= port <= 65535:
        raise CliError("--port must be from 1 to 65535", EXIT_USAGE)


def cmd_api(args: argparse.Namespace, settings: Settings) -> int:
    from api import serve

    check_port(args.port)
    warn_at_start(settings)
    run_api(serve(settings, args.host, args.port))
    return 0


def run_api(main: Coroutine[Any, Any, None]) -> None:
    from api.server import ServeError
    from api.tokens import TokenFileError

    try:
        run_checked(main)
    except TokenFileError as exc:
        raise CliError(str(exc), EXIT_USAGE) from None
    except ServeError as exc:
        raise CliError(str(exc)) from None


def cmd_redis(args: argparse.Namespace, settings: Settings) -> int:
    if args.stop:
        return stop_embedded(settings)
    server = start_embedded(settings)
    try:
        print(f"embedded Redis at {server.url}; Ctrl+C or `tgjobs redis --stop` stops it", file=sys.stderr)
        wait_for_signal(server)
    finally:
        server.stop()
    return 0


def stop_embedded(settings: Settings) -> int:
    """SHUTDOWN to the embedded Redis's loopback port (it writes its append-only file
    first); a server that is not running is not an error."""
    import redis

    from cli.embedded_redis import LOOPBACK, ping

    port = settings.embedded_redis_port
    if not ping(port):
        print(f"tgjobs: no embedded Redis answers on {LOOPBACK}:{port}", file=sys.stderr)
        return 0
    client = redis.Redis(host=LOOPBACK, port=port, socket_timeout=10)
    try:
        client.shutdown()
    except redis.RedisError as exc:
        raise CliError(f"cannot stop the embedded Redis on {LOOPBACK}:{port}: {exc}") from None
    finally:
        client.close()
    print(f"stopped the embedded Redis on {LOOPBACK}:{port}", file=sys.stderr)
    return 0


def wait_for_signal(server: EmbeddedRedis) -> None:
    """Blocks until SIGINT or SIGTERM, or until the server exits (`--stop`); signals
    unwind normally, so a child Redis is stopped rather than orphaned."""
    import time

    signal.signal(signal.SIGTERM, signal.default_int_handler)
    try:
        while server.running:
            time.sleep(0.2)
    except KeyboardInterrupt:
        pass
