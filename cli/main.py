"""The `tgjobs` command. This module builds the one argument parser (each command
module adds its own subcommands to it) and dispatches; the commands live in
cli.processes (workers, up, api, redis), cli.jobs (publish, job, retry, remove),
cli.queues (status, clean, pause, resume, dlq), cli.watch, cli.health and cli.database
(db, sink).

Exit codes: 0 success, 1 the operation failed, 2 bad usage or settings, 3 Redis
unreachable. Errors are one line on stderr; secrets never appear in them.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable

from cli import database, health, jobs, processes, queues, watch
from cli.common import EXIT_FAILED, EXIT_UNREACHABLE, EXIT_USAGE, CliError, fail
from cli.logs import configure_logging
from config import Settings, SettingsError, load_settings
from streams import tracing

__all__ = ["EXAMPLES", "EXIT_FAILED", "EXIT_UNREACHABLE", "EXIT_USAGE", "CliError", "build_parser", "main"]

EXAMPLES = {
    "workers": "tgjobs workers --queues research,signals --concurrency 8 --processes auto",
    "publish": "tgjobs publish research '{\"companyId\": \"comp_123\", \"companyName\": \"Acme\"}' --priority high",
    "status": "tgjobs status --json",
    "up": "tgjobs up --host 0.0.0.0 --port 3000 --queues research,signals",
    "redis": "tgjobs redis",
    "api": "tgjobs api --host 0.0.0.0 --port 3000",
    "job": "tgjobs job research-01JD2X5V3G8K6M7W4Q9T1B0C2E --json",
    "retry": "tgjobs retry research-01JD2X5V3G8K6M7W4Q9T1B0C2E",
    "remove": "tgjobs remove research-01JD2X5V3G8K6M7W4Q9T1B0C2E",
    "clean": "tgjobs clean research --grace 24h --limit 100 --type completed",
    "pause": "tgjobs pause research",
    "resume": "tgjobs resume research",
    "dlq": "tgjobs dlq replay research --ids research-01JD2X5V3G8K6M7W4Q9T1B0C2E",
    "watch": "tgjobs watch --once --json",
    "health": "tgjobs health --queues research,signals",
    "db": "tgjobs db migrate",
    "sink": "tgjobs sink",
}

Handler = Callable[[argparse.Namespace, Settings], int]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tgjobs", description="Jobs and events on Redis Streams.",
        epilog="examples:\n" + "\n".join(f"  {e}" for e in EXAMPLES.values())
        + "\n\nexit codes: 0 success, 1 the operation failed, 2 bad usage or settings, 3 Redis unreachable",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name: str, help: str, handler: Handler) -> argparse.ArgumentParser:
        sub = commands.add_parser(name, help=help, description=help,
                                  epilog=f"example:\n  {EXAMPLES[name]}",
                                  formatter_class=argparse.RawDescriptionHelpFormatter)
        sub.set_defaults(handler=handler)
        return sub

    for module in (processes, jobs, queues, watch, health, database):
        module.add_commands(command)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        settings = load_settings()
        if getattr(args, "traced", False):  # the commands that run the API or workers
            tracing.setup(settings)
        configure_logging(settings)
        return args.handler(args, settings)
    except SettingsError as exc:
        return fail(str(exc), EXIT_USAGE)
    except CliError as exc:
        return fail(str(exc), exc.code)
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
