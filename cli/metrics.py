"""`tgjobs workers --metrics-port N`: each worker process serves its own /metrics (the
Prometheus way: one target per process), from streams.metrics.REGISTRY. The flag wins
over METRICS_PORT; with neither, nothing is served."""

from __future__ import annotations

import argparse
import logging

from cli.common import EXIT_USAGE, CliError
from config import Settings
from streams import metrics

log = logging.getLogger("tgjobs")


def add_metrics_port(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--metrics-port", type=int, metavar="N",
                        help="serve this process's Prometheus metrics on :N/metrics (default: METRICS_PORT)")


def serve_worker_metrics(args: argparse.Namespace, settings: Settings) -> metrics.MetricsServer | None:
    port = getattr(args, "metrics_port", None) or settings.metrics_port
    if port is None:
        return None
    if not 1 <= port <= 65535:
        raise CliError("--metrics-port must be from 1 to 65535", EXIT_USAGE)
    try:
        server = metrics.serve(port)
    except OSError as exc:
        raise CliError(f"cannot serve metrics on port {port}: {exc}") from None
    log.info("metrics on http://0.0.0.0:%d/metrics", server.port)
    return server
