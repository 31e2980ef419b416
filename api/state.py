"""Typed keys of what the application and each request carry. The app factory and the
Redis cleanup context fill the app's; the middlewares fill a request's.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from redis.asyncio import Redis

from api.audit import AuditTrail
from api.tokens import Principal, Role, TokenStore
from config import Settings
from processors.intake import SignalIntake
from streams import Producer, QueueAdmin

SETTINGS = web.AppKey("settings", Settings)
TOKENS = web.AppKey("tokens", TokenStore)
# The role each route's handler needs; None: open to anyone (health, readiness, the document).
ROLES = web.AppKey("roles", dict[Callable[[web.Request], Awaitable[web.StreamResponse]], Role | None])
OPENAPI = web.AppKey("openapi", dict[str, Any])
# The one signal intake of the app: both signal endpoints check and encode with it.
SIGNAL_INTAKE = web.AppKey("signal_intake", SignalIntake)

# Set by the Redis cleanup context for the app's lifetime.
REDIS = web.AppKey("redis", Redis)
PRODUCER = web.AppKey("producer", Producer)
ADMIN = web.AppKey("admin", QueueAdmin)
AUDIT = web.AppKey("audit", AuditTrail)


@dataclass
class EventStreams:
    """The open GET /api/events answers: the pool their blocking reads use (one
    connection each), how many are open (in all, and per token name), and the flag that
    ends them at shutdown."""

    redis: Redis
    stopping: asyncio.Event = field(default_factory=asyncio.Event)
    open: int = 0
    by_caller: Counter[str] = field(default_factory=Counter)


EVENTS = web.AppKey("events", EventStreams)

REQUEST_ID = web.RequestKey("request_id", str)
PRINCIPAL = web.RequestKey("principal", Principal)
