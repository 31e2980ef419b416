"""Several worker processes on one host: a supervisor starts N children, each running
the workers of the same queues as `tgjobs workers` does (its own consumer, its own
registry entry), and keeps N running until it is stopped.

- A child that dies is started again; a child that keeps dying young waits longer
  each time (RESTART_FIRST_S doubling to RESTART_MAX_S), so a crash at start is
  retried with backoff, logged, never in a hot loop. A child that lived STABLE_S or
  longer is restarted at once.
- SIGTERM/SIGINT to the supervisor is forwarded to every child, which stops reading
  and gives its running jobs `shutdown_grace`; the supervisor returns when all have
  exited. A child still alive KILL_MARGIN_S after its grace is SIGKILLed (its jobs
  stay pending and are reclaimed), so no child outlives the supervisor.
- Children run in their own process group (a terminal's Ctrl+C reaches them once,
  through the supervisor) and get SIGTERM when the supervisor dies, even by SIGKILL
  (cli.worker_process).

A child is `python -m cli.worker_process`, given its WorkerSpec (the settings
included, secrets and all) pickled on its stdin: nothing goes through argv or the
environment. `Supervisor(spec, n).run()` is the programmatic entry point
(benchmarks): `stop()` ends it, `pids` names the children.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import pickle
import signal
import sys
import time
from dataclasses import dataclass, replace

from config import Settings

log = logging.getLogger(__name__)

RESTART_FIRST_S = 0.5
RESTART_MAX_S = 30.0
STABLE_S = 10.0  # a child that lived this long died of something new: restart at once
KILL_MARGIN_S = 5.0


@dataclass(frozen=True)
class WorkerSpec:
    """What one worker process runs. `metrics_port`, when set, is the first port:
    process i serves metrics_port + i."""

    settings: Settings
    queues: tuple[str, ...]
    concurrency: int | None = None
    burst: bool = False
    metrics_port: int | None = None
    supervisor_pid: int = 0  # set per child: it exits when this process is gone

    def for_child(self, index: int, supervisor_pid: int) -> WorkerSpec:
        port = None if self.metrics_port is None else self.metrics_port + index
        return replace(self, metrics_port=port, supervisor_pid=supervisor_pid)


def restart_delay(quick_exits: int) -> float:
    """Seconds before the next start of a child that died `quick_exits` times in a row
    before STABLE_S (0: it had been running fine)."""
    if quick_exits == 0:
        return 0.0
    return min(RESTART_FIRST_S * 2 ** min(quick_exits - 1, 16), RESTART_MAX_S)


def describe_exit(code: int) -> str:
    if code >= 0:
        return f"exited with code {code}"
    try:
        return f"was killed by {signal.Signals(-code).name}"
    except ValueError:  # a real-time signal has no name
        return f"was killed by signal {-code}"


class Supervisor:
    def __init__(self, spec: WorkerSpec, processes: int) -> None:
        if processes < 1:
            raise ValueError("processes must be at least 1")
        self.spec = spec
        self.processes = processes
        self._children: dict[int, asyncio.subprocess.Process] = {}
        self._stopping = asyncio.Event()
        self._signal = signal.SIGTERM
        self._deadline: asyncio.TimerHandle | None = None

    @property
    def pids(self) -> list[int]:
        """The pids of the children running now, by process index."""
        return [self._children[i].pid for i in sorted(self._children)]

    def stop(self, signum: int = signal.SIGTERM) -> None:
        """Stops restarting and passes `signum` on to every child; children still running
        `shutdown_grace` + KILL_MARGIN_S later are SIGKILLed. Call it in the loop's thread."""
        first = not self._stopping.is_set()
        self._signal = signal.Signals(signum)
        self._stopping.set()
        if first:
            log.info("received %s: stopping %d worker process(es) (running jobs get up to %.0fs)",
                     self._signal.name, len(self._children), self.spec.settings.shutdown_grace)
            with contextlib.suppress(RuntimeError):  # no loop running: run() has not started any child
                self._deadline = asyncio.get_running_loop().call_later(
                    self.spec.settings.shutdown_grace + KILL_MARGIN_S, self._kill_stragglers)
        for child in self._children.values():
            with contextlib.suppress(ProcessLookupError):
                child.send_signal(self._signal)

    async def run(self, *, handle_signals: bool = True) -> None:
        """Keeps the children running until stop() (SIGTERM/SIGINT with `handle_signals`)
        or, in burst mode, until every child has drained its queues and exited 0, and
        returns once every child has exited. A Supervisor runs once."""
        loop = asyncio.get_running_loop()
        signals = (signal.SIGTERM, signal.SIGINT) if handle_signals else ()
        for signum in signals:
            loop.add_signal_handler(signum, self.stop, signum)
        log.info("supervising %d worker processes for %s", self.processes, ", ".join(self.spec.queues))
        keepers = [asyncio.create_task(self._keep(i)) for i in range(self.processes)]
        try:
            await asyncio.gather(*keepers)
        finally:  # whatever ended it (an error, a cancelled task), no child is left behind
            self._stopping.set()
            for signum in signals:
                loop.remove_signal_handler(signum)
            for keeper in keepers:
                keeper.cancel()
            for child in list(self._children.values()):
                with contextlib.suppress(ProcessLookupError):
                    child.kill()
                await child.wait()
            if self._deadline is not None:
                self._deadline.cancel()
        log.info("every worker process has exited")

    def _kill_stragglers(self) -> None:
        if not self._children:
            return
        log.error("worker process(es) %s still running %.0fs after %s: killing them",
                  ", ".join(map(str, self.pids)), self.spec.settings.shutdown_grace + KILL_MARGIN_S,
                  self._signal.name)
        for child in self._children.values():
            with contextlib.suppress(ProcessLookupError):
                child.kill()

    async def _keep(self, index: int) -> None:
        """Keeps process `index` running: restarts it when it dies, with backoff."""
        quick_exits = 0
        while not self._stopping.is_set():
            started = time.monotonic()
            ended = await self._run_once(index)
            if ended is None:
                return
            lived = time.monotonic() - started
            quick_exits = quick_exits + 1 if lived < STABLE_S else 0
            delay = restart_delay(quick_exits)
            log.warning("worker process %d %s after %.1fs; restarting it in %.1fs", index, ended, lived, delay)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), delay)

    async def _run_once(self, index: int) -> str | None:
        """Runs process `index` until it exits; says how it ended when it is to be
        restarted, None when not (stopping, or drained in burst mode)."""
        try:
            child = await self._start(index)
        except OSError as exc:  # fork or exec failed (EAGAIN, ENOMEM): try again later
            return f"could not be started ({exc})"
        try:
            code = await child.wait()
        finally:
            self._children.pop(index, None)
        ended = f"(pid {child.pid}) {describe_exit(code)}"
        if self._stopping.is_set():
            log.info("worker process %d %s", index, ended)
            return None
        if self.spec.burst and code == 0:
            log.info("worker process %d (pid %d) drained its queues and exited", index, child.pid)
            return None
        return ended

    async def _start(self, index: int) -> asyncio.subprocess.Process:
        child = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "cli.worker_process", stdin=asyncio.subprocess.PIPE, process_group=0)
        self._children[index] = child
        if self._stopping.is_set():  # stopped while it was being started
            child.send_signal(self._signal)
        assert child.stdin is not None
        try:
            child.stdin.write(pickle.dumps(self.spec.for_child(index, os.getpid())))
            await child.stdin.drain()
        except (BrokenPipeError, ConnectionResetError):
            pass  # it died at once: wait() says how
        finally:
            child.stdin.close()
        log.info("started worker process %d (pid %d)", index, child.pid)
        return child
