"""`--processes N`: a supervisor and its worker processes, all real processes on the
test Redis. A killed child is replaced and registered; SIGTERM and SIGINT reach every
child and the supervisor exits 0 with no child left; a child that crashes at start is
restarted with growing delays; a SIGKILLed supervisor takes its children with it; bad
`--processes` values are one-line errors; the programmatic entry point runs a burst.

Children are found through /proc (their parent pid), so these tests need Linux.
"""

from __future__ import annotations

import json
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aioredis
from test_cli import clean_env, one_line_error
from test_processes import eventually

from cli.embedded_redis import free_port
from cli.supervisor import KILL_MARGIN_S, Supervisor, WorkerSpec
from config import Settings
from processors.record_keys import CompanyKeys
from streams import JobSpec, Producer, QueueAdmin
from streams.registry import WorkerRegistry

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="children are found in /proc")

ROOT = Path(__file__).parents[1]
GRACE_S = 5
RESTART = re.compile(r"worker process (?P<index>\d+) \(pid (?P<pid>\d+)\) (?P<how>.+?) after [\d.]+s; "
                     r"restarting it in (?P<delay>[\d.]+)s")


def process_state(pid: int) -> str | None:
    """The state letter in /proc/<pid>/stat (None once the pid is gone)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return None
    return stat.rsplit(")", 1)[1].split()[0]


def alive(pid: int) -> bool:
    return process_state(pid) not in (None, "Z", "X")


def children_of(pid: int) -> set[int]:
    """Live processes whose parent is `pid`."""
    found = set()
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (FileNotFoundError, ProcessLookupError):
            continue
        if int(fields[1]) == pid and fields[0] not in ("Z", "X"):
            found.add(int(stat.parent.name))
    return found


@dataclass
class Supervised:
    proc: subprocess.Popen[bytes]
    log_path: Path
    seen: set[int]  # every child pid observed, for the checks and the teardown

    def children(self) -> set[int]:
        pids = children_of(self.proc.pid)
        self.seen |= pids
        return pids

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stopped_cleanly(self, pids: set[int]) -> bool:
        """Each of `pids` logged the end of a clean stop (its consumer name holds its pid)."""
        return all(re.search(rf"worker \S+-{pid}-\w+ stopped", self.log()) for pid in pids)

    def restarts(self) -> list[dict[str, str]]:
        return [m.groupdict() for m in RESTART.finditer(self.log())]


@pytest.fixture
def env(redis_url: str, key_prefix: str) -> dict[str, str]:
    return {**clean_env(), "REDIS_URL": redis_url, "KEY_PREFIX": key_prefix, "WORKER_HEARTBEAT": "200ms",
            "WORKER_TTL": "1s", "SHUTDOWN_GRACE": str(GRACE_S)}


@pytest.fixture
def supervise(tmp_path: Path, env: dict[str, str]) -> Iterator[Callable[..., Supervised]]:
    """Starts `tgjobs ARGS...`; at teardown the supervisor and every child seen are killed."""
    started: list[Supervised] = []

    def start(*args: str, **more_env: str) -> Supervised:
        log_path = tmp_path / f"supervisor-{len(started)}.log"
        with log_path.open("wb") as stderr:
            proc = subprocess.Popen([sys.executable, "-m", "cli.main", *args], cwd=ROOT, env={**env, **more_env},
                                    stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=stderr)
        started.append(Supervised(proc, log_path, set()))
        return started[-1]

    try:
        yield start
    finally:
        for run in started:
            if run.proc.poll() is None:
                run.children()
                run.proc.kill()
            run.proc.wait()
            for pid in run.seen:
                if alive(pid):
                    subprocess.run(["kill", "-9", str(pid)], check=False)


async def registered_pids(redis: aioredis.Redis, settings: Settings) -> set[int]:
    return {w.pid for w in await WorkerRegistry(redis, settings).live()}


async def until_registered(run: Supervised, redis: aioredis.Redis, settings: Settings, n: int) -> set[int]:
    """Waits for `n` children, each registered as a worker; returns their pids."""

    async def settled() -> set[int] | None:
        children = run.children()
        live = {pid for pid in await registered_pids(redis, settings) if alive(pid)}
        return children if len(children) == n and live == children else None

    return await eventually(settled, 30, interval=0.1, what=lambda: f"{n} registered children\n{run.log()}")


async def until_exit(run: Supervised, timeout: float) -> int:
    await eventually(lambda: run.proc.poll() is not None, timeout, what=lambda: f"the supervisor to exit\n{run.log()}")
    return run.proc.returncode


# -- the supervisor's life -------------------------------------------------------------------------


async def test_a_killed_child_is_replaced_and_sigterm_stops_every_child(
        supervise: Callable[..., Supervised], engine_redis: aioredis.Redis,
        make_settings: Callable[..., Settings]) -> None:
    settings = make_settings()
    run = supervise("workers", "--queues", "signals", "--processes", "2")
    first = await until_registered(run, engine_redis, settings, 2)
    assert run.proc.pid not in first

    victim = min(first)
    subprocess.run(["kill", "-9", str(victim)], check=True)
    await eventually(lambda: not alive(victim), 10)  # SIGKILL lands a moment after kill returns
    second = await until_registered(run, engine_redis, settings, 2)
    assert victim not in second and len(second - first) == 1, (first, second)
    (restart,) = run.restarts()
    assert (int(restart["pid"]), restart["how"]) == (victim, "was killed by SIGKILL"), run.log()

    run.proc.send_signal(signal.SIGTERM)
    assert await until_exit(run, GRACE_S + 15) == 0, run.log()
    assert not any(alive(pid) for pid in run.seen), run.log()
    assert run.stopped_cleanly(second), run.log()
    # The two that stopped cleanly left the registry at once; the killed one's entry expired.
    await eventually(lambda: _registry_empty(engine_redis, settings), 5)


async def _registry_empty(redis: aioredis.Redis, settings: Settings) -> bool:
    return not await WorkerRegistry(redis, settings).live()


async def test_up_lists_every_process_in_the_api_and_sigint_stops_them_all(
        supervise: Callable[..., Supervised]) -> None:
    port = free_port()
    run = supervise("up", "--host", "127.0.0.1", "--port", str(port), "--queues", "signals", "--processes", "2")

    def api_workers() -> list[dict[str, Any]] | None:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/workers", timeout=5) as answer:
                workers = json.loads(answer.read())["workers"]
        except OSError:
            return None
        return workers if len(workers) == 2 else None

    workers = await eventually(api_workers, 30, what=lambda: run.log())
    assert {w["pid"] for w in workers} == run.children() and run.proc.pid not in run.seen
    assert all(w["queues"] == ["signals"] and w["host"] == socket.gethostname() for w in workers)

    run.proc.send_signal(signal.SIGINT)
    assert await until_exit(run, GRACE_S + 15) == 0, run.log()
    assert not any(alive(pid) for pid in run.seen), run.log()
    assert "received SIGINT" in run.log() and run.stopped_cleanly(run.seen), run.log()
    assert api_workers() is None  # the API is gone with them


async def test_a_child_that_crashes_at_start_is_restarted_with_growing_delays(
        supervise: Callable[..., Supervised], engine_redis: aioredis.Redis,
        make_settings: Callable[..., Settings]) -> None:
    # Process 0 serves metrics on a port that is taken: it exits 1 at every start.
    taken, port = _two_ports()
    try:
        run = supervise("workers", "--queues", "signals", "--processes", "2", "--metrics-port", str(port))
        await eventually(lambda: len(run.restarts()) >= 3, 30, what=lambda: run.log())
        (healthy,) = await registered_pids(engine_redis, make_settings())
        restarts = run.restarts()
        assert {r["index"] for r in restarts} == {"0"}, run.log()
        assert all(r["how"] == "exited with code 1" for r in restarts)
        assert [float(r["delay"]) for r in restarts[:3]] == [0.5, 1.0, 2.0], run.log()
        assert f"cannot serve metrics on port {port}" in run.log()
        assert healthy in run.children()  # process 1 ran throughout
        run.proc.send_signal(signal.SIGTERM)
        assert await until_exit(run, GRACE_S + 15) == 0, run.log()
        assert not any(alive(pid) for pid in run.seen)
        after_stop = run.log().split("received SIGTERM", 1)[1]
        assert "started worker process" not in after_stop, run.log()  # no restart once stopping
    finally:
        taken.close()


def _two_ports() -> tuple[socket.socket, int]:
    """A listening socket on port P (so P is taken) where P + 1 is free."""
    for _ in range(50):
        taken = socket.socket()
        taken.bind(("0.0.0.0", 0))
        taken.listen()
        port = taken.getsockname()[1]
        try:
            with socket.socket() as probe:
                probe.bind(("0.0.0.0", port + 1))
        except OSError:
            taken.close()
            continue
        return taken, port
    raise AssertionError("no two adjacent ports free")


async def test_a_child_that_does_not_stop_within_the_grace_is_killed(
        supervise: Callable[..., Supervised], engine_redis: aioredis.Redis,
        make_settings: Callable[..., Settings]) -> None:
    settings = make_settings()
    run = supervise("workers", "--queues", "signals", "--processes", "2", SHUTDOWN_GRACE="1")
    wedged, fine = sorted(await until_registered(run, engine_redis, settings, 2))
    subprocess.run(["kill", "-STOP", str(wedged)], check=True)  # it cannot act on SIGTERM
    began = time.monotonic()
    run.proc.send_signal(signal.SIGTERM)
    assert await until_exit(run, 1 + KILL_MARGIN_S + 10) == 0, run.log()
    assert time.monotonic() - began >= 1 + KILL_MARGIN_S - 0.5
    assert not alive(wedged) and not alive(fine)
    assert f"worker process(es) {wedged} still running 6s after SIGTERM: killing them" in run.log()
    assert run.stopped_cleanly({fine}) and not run.stopped_cleanly({wedged}), run.log()


async def test_a_sigkilled_supervisor_takes_its_children_with_it(
        supervise: Callable[..., Supervised], engine_redis: aioredis.Redis,
        make_settings: Callable[..., Settings]) -> None:
    settings = make_settings()
    run = supervise("workers", "--queues", "signals", "--processes", "2")
    children = await until_registered(run, engine_redis, settings, 2)
    run.proc.kill()
    await eventually(lambda: not any(alive(pid) for pid in children), GRACE_S + 10, what=lambda: run.log())
    # Each got SIGTERM (PR_SET_PDEATHSIG) and stopped cleanly: its entry left at once.
    assert run.stopped_cleanly(children), run.log()
    assert not await registered_pids(engine_redis, settings)


@pytest.mark.parametrize("args, message", [
    (("workers", "--processes", "0"), "--processes must be from 1 to 256, not 0"),
    (("workers", "--processes", "two"), "--processes must be a whole number or 'auto', not 'two'"),
    (("up", "--processes", "-3"), "--processes must be from 1 to 256, not -3"),
    (("workers", "--processes", "4", "--metrics-port", "65534"), "leaves no room for 4 processes"),
])
def test_bad_processes_values_are_one_line_usage_errors(env: dict[str, str], args: tuple[str, ...],
                                                        message: str) -> None:
    result = subprocess.run([sys.executable, "-m", "cli.main", *args], cwd=ROOT, env=env,
                            capture_output=True, text=True, timeout=60)
    assert message in one_line_error(result, 2)


# -- the programmatic entry point ------------------------------------------------------------------


async def test_supervisor_runs_a_burst_across_processes(engine_redis: aioredis.Redis, key_prefix: str,
                                                        make_settings: Callable[..., Settings]) -> None:
    settings = make_settings()
    companies = [f"comp_{i}" for i in range(8)]
    await Producer(engine_redis, settings).add_many("signals", [
        JobSpec({"signalId": f"sig_{i}", "signalType": "Email Open", "companyId": companies[i % 8],
                 "data": {"timestamp": "2024-01-15T10:30:00Z"}}) for i in range(40)])

    supervisor = Supervisor(WorkerSpec(settings, ("signals",), burst=True), processes=2)
    await supervisor.run(handle_signals=False)  # returns when both children drained and exited 0

    assert supervisor.pids == []
    status = await QueueAdmin(engine_redis, settings).status("signals")
    assert (status.lag, status.pending, status.dead) == (0, 0, 0)
    history = [await engine_redis.llen(CompanyKeys(key_prefix, c).signals) for c in companies]
    assert sum(history) == 40
