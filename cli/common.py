"""What every command module shares: exit codes, the one-line error, running an action
against Redis (unreachable -> exit 3), argument checks, JSON and table output, and a
progress bar that shows only on a terminal."""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Awaitable, Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, Protocol, TypeVar

import orjson
from redis.asyncio import Redis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from config import Settings, parse_duration
from streams import InvalidJob, JobNotFound, StreamsError, UnknownQueue, connect

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_UNREACHABLE = 0, 1, 2, 3
T = TypeVar("T")


class CliError(Exception):
    def __init__(self, message: str, code: int = EXIT_FAILED) -> None:
        super().__init__(message)
        self.code = code


class CommandAdder(Protocol):
    """build_parser's `command(name, help, handler)`: adds a subcommand with its example."""

    def __call__(self, name: str, help: str, handler: Callable[[argparse.Namespace, Settings], int]
                 ) -> argparse.ArgumentParser: ...


def fail(message: str, code: int) -> int:
    print(f"tgjobs: {message}", file=sys.stderr)
    return code


def unreachable(settings: Settings, exc: BaseException) -> CliError:
    return CliError(f"cannot reach Redis at {settings.redis_location()}: {exc}", EXIT_UNREACHABLE)


async def with_redis(settings: Settings, action: Callable[[Redis], Awaitable[T]]) -> T:
    redis = connect(settings)
    try:
        return await action(redis)
    except (RedisConnectionError, RedisTimeoutError, OSError) as exc:
        raise unreachable(settings, exc) from None
    except (InvalidJob, UnknownQueue) as exc:
        raise CliError(str(exc), EXIT_USAGE) from None
    except StreamsError as exc:
        raise CliError(str(exc), EXIT_FAILED) from None
    finally:
        await redis.aclose()


def run_with_redis(settings: Settings, action: Callable[[Redis], Awaitable[T]]) -> T:
    return asyncio.run(with_redis(settings, action))


def check_queue(settings: Settings, queue: str) -> str:
    if queue not in settings.queues:
        raise CliError(f"unknown queue {queue!r}; configured: {', '.join(settings.queues)}", EXIT_USAGE)
    return queue


def check_queues(settings: Settings, queues: Sequence[str]) -> list[str]:
    """`queues` when every one is configured; else a usage error naming the unknown ones."""
    unknown = [q for q in queues if q not in settings.queues]
    if unknown:
        raise CliError(f"unknown queue(s): {', '.join(unknown)}; configured: {', '.join(settings.queues)}",
                       EXIT_USAGE)
    return list(queues)


def check_job_id(settings: Settings, job_id: str) -> str:
    """A job id names its queue; an id of no configured queue is not found (exit 1)."""
    from streams.keys import queue_of_job

    if queue_of_job(job_id) not in settings.queues:
        raise CliError(str(JobNotFound(job_id)), EXIT_FAILED)
    return job_id


def duration_arg(option: str, text: str) -> float:
    try:
        return parse_duration(text)
    except ValueError as exc:
        raise CliError(f"{option}: {exc}", EXIT_USAGE) from None


def positive(option: str, value: int) -> int:
    if value < 1:
        raise CliError(f"{option} must be at least 1", EXIT_USAGE)
    return value


def print_json(value: Any) -> None:
    print(orjson.dumps(value, default=_jsonable).decode())


def _jsonable(value: Any) -> Any:
    if hasattr(value, "model_dump"):
        return value.model_dump(mode="json")
    raise TypeError(f"cannot write {type(value).__name__} as JSON")


def cell(value: Any) -> str:
    return "-" if value is None else str(value)


def print_table(columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    """Plain aligned columns (first left, the rest right): easy to read and to `awk`."""
    table = [list(columns)] + [[cell(v) for v in row] for row in rows]
    widths = [max(len(r[i]) for r in table) for i in range(len(columns))]
    for r in table:
        print("  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths))))


class Progress:
    """A rich progress bar on stderr when stdout is a terminal; nothing when piped."""

    def __init__(self, description: str, total: int) -> None:
        self._bar: Any = None
        self._task: Any = None
        if sys.stdout.isatty() and total > 1:
            from rich.progress import Progress as RichProgress

            self._bar = RichProgress(transient=True)
            self._task = self._bar.add_task(description, total=total)

    def advance(self, n: int = 1) -> None:
        if self._bar is not None:
            self._bar.advance(self._task, n)


@contextmanager
def progress(description: str, total: int) -> Iterator[Progress]:
    bar = Progress(description, total)
    if bar._bar is None:
        yield bar
        return
    with bar._bar:
        yield bar
