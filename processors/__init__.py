"""Handlers of the job types, one module per type, registered by queue name.

The engine never imports this package; the CLI hands `HANDLERS` to the workers.
The four processors of the seed (research, enrichment, reports, signals) are built
in their own issue; until then no queue has a handler.
"""

from streams import Handler

HANDLERS: dict[str, Handler] = {}
