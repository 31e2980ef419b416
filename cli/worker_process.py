"""One worker process of a supervisor (cli.supervisor). `python -m cli.worker_process`
reads its WorkerSpec, pickled, from stdin, arranges to be stopped when the supervisor
dies, then runs the workers as `tgjobs workers` does and exits as it does: 0 after
SIGTERM/SIGINT (running jobs had their grace), 1 with a one-line error.

Dying with the supervisor, even a SIGKILLed one: on Linux the kernel sends this
process SIGTERM when its parent dies (prctl PR_SET_PDEATHSIG, through ctypes), so
running jobs still get their grace; elsewhere a daemon thread polls the parent pid
every PARENT_POLL_S and sends the same SIGTERM. The parent is checked once after
arming, as it may have died before. The kernel may send the signal more than once (seen
here: once per supervisor thread the child passes through on the way to init); a
second SIGTERM to a stopping worker changes nothing.
"""

from __future__ import annotations

import asyncio
import ctypes
import os
import pickle
import signal
import sys
import threading
import time

from cli.common import CliError, fail
from cli.logs import configure_logging
from cli.metrics import serve_metrics
from cli.processes import consume
from cli.supervisor import WorkerSpec

PR_SET_PDEATHSIG = 1  # <linux/prctl.h>
PARENT_POLL_S = 1.0


def stop_with_parent(parent_pid: int) -> None:
    """SIGTERM to this process once `parent_pid` is no longer its parent."""
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.prctl(PR_SET_PDEATHSIG, ctypes.c_ulong(signal.SIGTERM), 0, 0, 0) != 0:
            raise OSError(ctypes.get_errno(), "prctl(PR_SET_PDEATHSIG) failed")
    else:
        threading.Thread(target=_poll_parent, args=(parent_pid,), name="parent-watch", daemon=True).start()
    if os.getppid() != parent_pid:
        os.kill(os.getpid(), signal.SIGTERM)


def _poll_parent(parent_pid: int) -> None:
    while os.getppid() == parent_pid:
        time.sleep(PARENT_POLL_S)
    os.kill(os.getpid(), signal.SIGTERM)


def main() -> int:
    spec: WorkerSpec = pickle.load(sys.stdin.buffer)
    stop_with_parent(spec.supervisor_pid)
    configure_logging(spec.settings)
    try:
        serve_metrics(spec.metrics_port)
        asyncio.run(consume(spec.settings, list(spec.queues), concurrency=spec.concurrency, burst=spec.burst))
    except CliError as exc:
        return fail(str(exc), exc.code)
    except KeyboardInterrupt:
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
