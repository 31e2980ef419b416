"""`tgjobs watch`: a live terminal view of every queue (counts, lag, pending, consumers,
and throughput over the last seconds), redrawn every second with rich; `--once`
prints one frame (a table, or JSON with `--json`) for tests and pipes.

Throughput is counted from each queue's events stream (the `completed` and `failed`
events, timed by their entry ids, so even the first frame has a rate; a fast-path
batch's one `completed` event carries its count).
"""

from __future__ import annotations

import argparse
import asyncio
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from redis.asyncio import Redis

from cli.common import CommandAdder, duration_arg, print_json, run_with_redis
from config import Settings
from streams import QueueAdmin, QueueKeys
from streams.figures import QueueStatus
from streams.registry import WorkerRegistry

RATE_WINDOW_S = 10.0
EVENTS_PAGE = 5000
PIPED_WIDTH = 160
COLUMNS = ["queue", "state", "waiting", "active", "delayed", "completed", "failed", "dead", "lag", "pending",
           "consumers", "done/s", "failed/s"]


def add_commands(command: CommandAdder) -> None:
    watch = command("watch", "a live view of every queue: counts, lag and throughput, each second", cmd_watch)
    watch.add_argument("--interval", default="1s", help="time between frames (default 1s)")
    watch.add_argument("--once", action="store_true", help="print one frame and exit (for scripts and pipes)")
    watch.add_argument("--json", action="store_true", help="with --once: print the frame as JSON")


@dataclass(slots=True)
class QueueRate:
    """Finishes of one queue in the last RATE_WINDOW_S seconds."""

    events_after: str | None = None  # last events entry read
    finished: deque[tuple[float, str, int]] = field(default_factory=deque)  # (seconds, event, jobs)

    def rates(self) -> tuple[float, float]:
        done = sum(count for _, kind, count in self.finished if kind == "completed")
        failed = sum(count for _, kind, count in self.finished if kind == "failed")
        return done / RATE_WINDOW_S, failed / RATE_WINDOW_S


class Watcher:
    def __init__(self, redis: Redis, settings: Settings) -> None:
        self.redis = redis
        self.settings = settings
        self.admin = QueueAdmin(redis, settings)
        self.registry = WorkerRegistry(redis, settings)
        self.rates = {q: QueueRate() for q in settings.queues}

    async def frame(self) -> dict[str, Any]:
        statuses = await self.admin.all_status()
        workers = await self.registry.live()
        now = time.time()
        rows = []
        for status in statuses:
            rate = self.rates[status.queue]
            await self._read_events(status.queue, rate, now)
            rows.append(_row(status, *rate.rates()))
        return {"at": int(now * 1000), "workers": len(workers), "queues": rows}

    async def _read_events(self, queue: str, rate: QueueRate, now: float) -> None:
        key = QueueKeys(self.settings.key_prefix, queue).events
        start = f"({rate.events_after}" if rate.events_after else f"{int((now - RATE_WINDOW_S) * 1000)}-0"
        while True:
            entries = await self.redis.xrange(key, start, "+", count=EVENTS_PAGE)
            for entry_id, fields in entries:
                if fields.get("event") in ("completed", "failed"):
                    rate.finished.append((int(entry_id.split("-")[0]) / 1000, fields["event"],
                                          int(fields.get("count") or 1)))
            if entries:
                rate.events_after = entries[-1][0]
                start = f"({rate.events_after}"
            if len(entries) < EVENTS_PAGE:
                break
        if rate.events_after is None:
            rate.events_after = f"{int((now - RATE_WINDOW_S) * 1000)}-0"
        while rate.finished and rate.finished[0][0] < now - RATE_WINDOW_S:
            rate.finished.popleft()


def _row(status: QueueStatus, done: float, failed: float) -> dict[str, Any]:
    consumers = {c.name for lane in status.lanes for c in lane.consumers}
    return {"queue": status.queue, "state": "paused" if status.paused else "running", **status.figures(),
            "consumers": len(consumers), "donePerSecond": round(done, 2), "failedPerSecond": round(failed, 2)}


def render(frame: dict[str, Any]) -> Any:
    from rich.table import Table

    at = time.strftime("%H:%M:%S", time.localtime(frame["at"] / 1000))
    table = Table(title=f"tgjobs: {len(frame['queues'])} queues, {frame['workers']} live worker(s), {at}",
                  title_justify="left")
    for name in COLUMNS:
        table.add_column(name, justify="left" if name in ("queue", "state") else "right")
    for row in frame["queues"]:
        cells = [row["queue"], row["state"]] + [row[c] for c in COLUMNS[2:-2]] + [
            f"{row['donePerSecond']:.1f}", f"{row['failedPerSecond']:.1f}"]
        style = "yellow" if row["state"] == "paused" else ("red" if row["dead"] else None)
        table.add_row(*["-" if c is None else str(c) for c in cells], style=style)
    return table


def cmd_watch(args: argparse.Namespace, settings: Settings) -> int:
    interval = duration_arg("--interval", args.interval)
    if interval <= 0:
        interval = 1.0
    if args.once:
        frame = run_with_redis(settings, lambda redis: Watcher(redis, settings).frame())
        if args.json:
            print_json(frame)
        else:
            _console().print(render(frame))
        return 0
    run_with_redis(settings, lambda redis: _live(Watcher(redis, settings), interval))
    return 0


def _console() -> Any:
    """The terminal's width on a terminal; wide enough for every column when piped."""
    from rich.console import Console

    return Console() if Console().is_terminal else Console(width=PIPED_WIDTH)


async def _live(watcher: Watcher, interval: float) -> None:
    from rich.live import Live

    with Live(render(await watcher.frame()), console=_console(), auto_refresh=False) as live:
        while True:
            await asyncio.sleep(interval)
            live.update(render(await watcher.frame()), refresh=True)
