"""`tgjobs workers --metrics-port N`: each worker process serves its own /metrics (the
Prometheus way: one target per process), from streams.metrics.REGISTRY. The flag wins
over METRICS_PORT; with neither, nothing is served. With `--processes N` the supervisor's
process i serves port N + i (cli.supervisor)."""

from __future__ import annotations

import argparse
import logging

from cli.common import EXIT_USAGE, CliError
from config import Settings
from streams import metrics

log = logging.getLogger("tgjobs")
MAX_PORT = 65535


def add_metrics_port(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--metrics-port", type=int, metavar="N",
                        help="serve this process's Prometheus metrics on :N/metrics (default: METRICS_PORT); "
                             "with --processes, process i serves N+i")


def metrics_port(args: argparse.Namespace, settings: Settings, processes: int = 1) -> int | None:
    """The first metrics port (`--metrics-port`, else METRICS_PORT), checked to leave
    room for one port per process; None when neither is set."""
    port = getattr(args, "metrics_port", None) or settings.metrics_port
    if port is None:
        return None
    if not 1 <= port <= MAX_PORT:
        raise CliError(f"--metrics-port must be from 1 to {MAX_PORT}", EXIT_USAGE)
    if port + processes - 1 > MAX_PORT:
        raise CliError(f"--metrics-port {port} leaves no room for {processes} processes "
                       f"(process i serves {port}+i, at most {MAX_PORT})", EXIT_USAGE)
    return port


def serve_metrics(port: int | None) -> metrics.MetricsServer | None:
    """Serves this process's metrics on `port` (nothing when None); a port that cannot
    be bound is a one-line error."""
    if port is None:
        return None
    try:
        server = metrics.serve(port)
    except OSError as exc:
        raise CliError(f"cannot serve metrics on port {port}: {exc}") from None
    log.info("metrics on http://0.0.0.0:%d/metrics", server.port)
    return server
