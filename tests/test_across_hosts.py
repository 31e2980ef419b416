"""Two worker hosts and a Redis host as network namespaces (tests/netns_lab.py): one
host is cut off while it runs a long job, the other takes the job over once the lease
runs out and completes it; when the link heals, the cut-off host's late completion is
fenced (complete.lua: owner and delivery count) and the job counts once.

Needs root and iproute2 (CI runs as root; `.ci/run` installs iproute2); skipped
otherwise. The workers are tests/worker_proc.py processes run inside the namespaces.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import redis.asyncio as aioredis
from netns_lab import LabUnavailable, NetnsLab, unavailable_reason
from redis_server import on_cluster
from test_processes import (ROOT, SIGNALS, WORKER_SCRIPT, Worker, add_jobs, assert_recovered, eventually,
                            starts, worker_logs)

from config import Settings
from streams import JobState, QueueAdmin

LEASE_S = 2.0
# The cut-off host's run. The link stays down until that host has noticed (a command
# timed out: about read_block + 5 s after the cut), so this run must end well after.
LONG_RUN_S = 15.0
RUN_TIMEOUT_S = 30.0  # above LONG_RUN_S (the test queue's row says 10 s)
TAKEOVER_RUN_S = 0.5  # the same job run again by the host that took it over
HOSTS = ("a", "b")


@pytest.fixture
def lab() -> Iterator[NetnsLab]:
    reason = unavailable_reason()
    if reason:
        pytest.skip(reason)
    if on_cluster():
        pytest.skip("brings its own single Redis: runs in the single-server pass")
    lab = NetnsLab(HOSTS)
    try:
        lab.create()
    except LabUnavailable as err:
        lab.destroy()
        pytest.skip(f"cannot create network namespaces here: {err}")
    try:
        yield lab
    finally:
        lab.destroy()


def start_worker(lab: NetnsLab, host: str, prefix: str, log_dir: Path) -> Worker:
    log_path = log_dir / f"worker-{host}.log"
    argv = [sys.executable, str(WORKER_SCRIPT), lab.redis_url, prefix, SIGNALS,
            "--lock-timeout", str(LEASE_S), "--timeout", str(RUN_TIMEOUT_S)]
    proc = lab.popen(host, argv, log_path=log_path, cwd=ROOT)
    return Worker(proc, log_path)


async def effect_of(client: aioredis.Redis, prefix: str, job_id: str) -> str | None:
    """The pid whose run of the job made its effect (worker_proc.py's SET NX)."""
    return await client.get(f"{prefix}:test:effect:{job_id}")


async def server_ms(client: aioredis.Redis) -> int:
    seconds, micros = await client.time()
    return seconds * 1000 + micros // 1000


async def test_a_host_cut_off_mid_job_loses_it_to_the_other_and_its_late_completion_is_fenced(
        lab: NetnsLab, tmp_path: Path, key_prefix: str, make_settings: Callable[..., Settings]) -> None:
    socket_path = lab.start_redis(tmp_path / "redis")
    # The test watches over the unix socket, which the cut does not touch. Of these
    # settings only the prefix and the policies matter: the client is this one.
    client = aioredis.Redis(unix_socket_path=str(socket_path), decode_responses=True)
    settings = make_settings(jobs={"lock_timeout": LEASE_S})
    admin = QueueAdmin(client, settings)
    keys = admin.keys(SIGNALS)
    try:
        workers = {host: start_worker(lab, host, key_prefix, tmp_path) for host in HOSTS}

        def logs() -> str:
            return worker_logs(*workers.values())

        await eventually(lambda: all(f"consuming {SIGNALS}" in w.stderr() for w in workers.values()), 30,
                         what=logs)

        [job_id] = await add_jobs(client, settings, SIGNALS,
                                  [{"sleep": LONG_RUN_S, "sleep_redelivered": TAKEOVER_RUN_S}])

        async def holder() -> str | None:
            """The host whose consumer has the job's entry pending, once its run began."""
            if not await starts(client, key_prefix):
                return None
            status = await admin.status(SIGNALS)
            names = [c.name for lane in status.lanes for c in lane.consumers if c.pending]
            return next((h for h, w in workers.items() for n in names if f"-{w.pid}-" in n), None)

        cut_host = await eventually(holder, 30, interval=0.02, what=logs)
        [other_host] = [h for h in HOSTS if h != cut_host]
        cut, other = workers[cut_host], workers[other_host]
        lab.cut(cut_host)
        cut_ms = await server_ms(client)

        # The other host takes the job over once the lease runs out, and completes it.
        async def completed() -> bool:
            return (await admin.job(job_id)).state is JobState.COMPLETED

        await eventually(completed, 30, what=logs)
        job = await admin.job(job_id)
        assert job.returnvalue == {"pid": str(other.pid)}, job
        assert job.stalls == 1 and job.attemptsMade == 1 and job.errorType is None, job
        runs = await starts(client, key_prefix)
        assert [j for j, _ in runs] == [job_id, job_id], runs
        # Not before the lease: the holder's last extension came at most a third of it before the cut.
        assert runs[1][1] - cut_ms >= LEASE_S * 1000 * 2 / 3 - 100, (runs, cut_ms)
        record = await client.hgetall(keys.job(job_id))
        # A real partition: nothing fails at once, commands hang until they time out.
        await eventually(lambda: "Redis unavailable" in cut.stderr(), 20, what=logs)
        assert cut.alive and "took it over" not in cut.stderr(), logs()

        lab.heal(cut_host)
        # The cut-off host's run ends, its completion goes out and is refused.
        await eventually(lambda: f"job {job_id} finished after another worker took it over" in cut.stderr(),
                         LONG_RUN_S + 10, what=logs)

        # The job counts once: its record is as the other host left it, one completion
        # and one completed event, and one effect, the other host's.
        assert await client.hgetall(keys.job(job_id)) == record
        status = await admin.status(SIGNALS)
        assert status.completed_total == 1 and status.counts["completed"] == 1, status
        assert status.pending == 0 and status.dead == 0 and status.counts["active"] == 0, status
        events = [fields for _, fields in await client.xrange(keys.events)
                  if fields.get("job") == job_id and fields.get("event") == "completed"]
        assert len(events) == 1, events
        assert await effect_of(client, key_prefix, job_id) == str(other.pid)
        assert len(await starts(client, key_prefix)) == 2  # nobody ran it a third time

        # The cut-off host rode out the partition: it logged it, is back, and still works.
        assert cut.alive and other.alive, logs()
        assert_recovered(cut)
        other.kill()
        [next_id] = await add_jobs(client, settings, SIGNALS, [{"n": 1}])
        assert await eventually(lambda: effect_of(client, key_prefix, next_id), 30, what=logs) == str(cut.pid)
    finally:
        await client.aclose()
