"""Handlers of the job kinds, one module per kind, declared in `kinds.KINDS` and built
per queue name by `build_handlers`.

The engine never imports this package; the CLI builds the handlers with
`build_handlers(settings, redis)` and hands them to the workers. Models (`models`),
the record store (`store`), report schedules (`schedules`) and the signal intake
(`intake`) serve the API as well.
"""

from __future__ import annotations

from collections.abc import Collection

from redis.asyncio import Redis

from config import Settings
from processors.kinds import KINDS
from streams import Handler


def build_handlers(settings: Settings, redis: Redis, queues: Collection[str] | None = None) -> dict[str, Handler]:
    """Queue name -> handler for every kind (or those of `queues`). `redis` must decode
    replies to str (streams.connect does); the caller owns and closes it."""
    return {kind.queue: kind.handler(settings, redis) for kind in KINDS if queues is None or kind.queue in queues}
