"""Running a fast-path batch's handler calls eagerly: each call starts at once, in order;
one that returns without waiting (no I/O) is done on the spot and costs no task, and
one that waits goes on as a task, at most `concurrency` of them at once, each failing
with JobTimeout when it overstays the queue's timeout (what Python 3.12's eager tasks
do, with one watchdog timer for the batch instead of a timeout context per call).
"""

from __future__ import annotations

import asyncio
import types
from collections import deque
from collections.abc import Callable, Coroutine, Generator, Sequence
from typing import Any

from streams.errors import JobTimeout


@types.coroutine
def _resume(call: Coroutine[Any, Any, Any], awaited: Any) -> Generator[Any, Any, Any]:
    """Goes on with a coroutine started by hand (`call.send(None)` gave `awaited`, what it
    waits on), as if the task running this had started it: what it waits on goes to the
    task, and what the task sends or throws (a cancellation) goes back into it."""
    while True:
        try:
            sent = yield awaited
        except BaseException as exc:
            try:
                awaited = call.throw(exc)
            except StopIteration as done:
                return done.value
        else:
            try:
                awaited = call.send(sent)
            except StopIteration as done:
                return done.value


class EagerBatch:
    """One batch's calls of `handler`; `run` returns each job's result or exception, in
    order, and the run time of each call."""

    def __init__(self, handler: Callable[[Any], Any], concurrency: int, timeout: float) -> None:
        self.handler = handler
        self.concurrency = concurrency
        self.timeout = timeout
        self._loop = asyncio.get_running_loop()
        self._waiting = 0  # calls running as tasks
        self._slot_freed = asyncio.Event()
        self._deadlines: deque[tuple[float, asyncio.Task[None]]] = deque()  # in start order: in due order
        self._expired: set[asyncio.Task[None]] = set()
        self._watchdog: asyncio.TimerHandle | None = None

    async def run(self, jobs: Sequence[Any]) -> tuple[list[Any], list[float]]:
        loop = self._loop
        outcomes: list[Any] = [None] * len(jobs)
        durations: list[float] = []
        try:
            for index, job in enumerate(jobs):
                started = loop.time()
                call = self.handler(job)
                try:
                    awaited = call.send(None)
                except StopIteration as done:
                    outcomes[index] = done.value
                except Exception as exc:
                    outcomes[index] = exc
                else:
                    self._start(self._finish(call, awaited, started, durations, outcomes, index), started)
                    await self._until(self.concurrency - 1)
                    continue
                durations.append(loop.time() - started)
            await self._until(0)
        finally:
            if self._watchdog is not None:
                self._watchdog.cancel()
        return outcomes, durations

    def _start(self, rest: Coroutine[Any, Any, None], started: float) -> None:
        task = self._loop.create_task(rest)
        task.add_done_callback(self._finished)
        self._waiting += 1
        self._deadlines.append((started + self.timeout, task))
        if self._watchdog is None:
            self._watchdog = self._loop.call_at(started + self.timeout, self._watch)

    def _finished(self, _: asyncio.Task[None]) -> None:
        self._waiting -= 1
        self._slot_freed.set()

    async def _until(self, most: int) -> None:
        """Waits until at most `most` calls run as tasks."""
        while self._waiting > most:
            self._slot_freed.clear()
            await self._slot_freed.wait()

    def _watch(self) -> None:
        """Cancels every call past its deadline, then sleeps until the next deadline."""
        now = self._loop.time()
        deadlines = self._deadlines
        while deadlines and (deadlines[0][1].done() or deadlines[0][0] <= now):
            _, task = deadlines.popleft()
            if not task.done():
                self._expired.add(task)
                task.cancel()
        self._watchdog = self._loop.call_at(deadlines[0][0], self._watch) if deadlines else None

    async def _finish(self, call: Coroutine[Any, Any, Any], awaited: Any, started: float,
                      durations: list[float], outcomes: list[Any], index: int) -> None:
        """The rest of a call that waited; its outcome goes to `outcomes[index]`."""
        try:
            outcomes[index] = await _resume(call, awaited)
        except asyncio.CancelledError:
            task = asyncio.current_task()
            if task not in self._expired:
                raise
            task.uncancel()  # type: ignore[union-attr]
            outcomes[index] = JobTimeout(f"attempt exceeded the queue's timeout of {self.timeout:g}s")
        except Exception as exc:
            outcomes[index] = exc
        finally:
            durations.append(self._loop.time() - started)
