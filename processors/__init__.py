"""Handlers of the job types, one module per type, built per queue name by `build_handlers`.

The engine never imports this package; the CLI builds the handlers with
`build_handlers(settings, redis)` and hands them to the workers. Models (`models`),
the record store (`store`) and report schedules (`schedules`) serve the API as well.
"""

from __future__ import annotations

from redis.asyncio import Redis

from config import Settings
from streams import Handler

HANDLED_QUEUES = ("research", "enrichment", "reports", "signals")
"""The queues `build_handlers` serves; known without building anything."""


def build_handlers(settings: Settings, redis: Redis) -> dict[str, Handler]:
    """Queue name -> handler for the four job types. `redis` must decode replies to str
    (streams.connect does); the caller owns and closes it."""
    # Imported here, not at the top: the API imports processors.models and should not
    # pay for feedparser, VADER's lexicon or dnspython when it never runs a handler.
    from processors.enrichment import EnrichmentProcessor
    from processors.reports import ReportProcessor
    from processors.research import ResearchProcessor
    from processors.signals import SignalProcessor

    signals = SignalProcessor(settings, redis)
    return {
        "research": ResearchProcessor(settings, redis).handle,
        "enrichment": EnrichmentProcessor(settings, redis).handle,
        "reports": ReportProcessor(settings, redis).handle,
        # On the fast path (no job records, the default) a whole batch is one call.
        "signals": signals.handle if settings.policy("signals").records else signals.batch_handler(),
    }
