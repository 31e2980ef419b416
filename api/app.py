"""The application factory: routes from the table and the dashboard's static files, the
error, cross-site guard (api.guard) and auth middlewares, the body size limit, and the Redis pools opened and closed in
cleanup contexts (the API's, and the one GET /api/events reads with, whose streams end
at shutdown).

`create_app(settings)` is all a server or a test needs; api.server runs it.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator

from aiohttp import web

from api.audit import AuditTrail
from api.auth import auth_middleware
from api.endpoints import ENDPOINTS
from api.errors import error_middleware, redis_unavailable
from api.guard import add_cors_headers, guard_middleware
from api.openapi import build_openapi
from api.routes.dashboard import STATIC_ROUTE, static_file
from api.routes.events import events_context, stop_event_streams
from api.schemas import JOB_IDS_MAX_CHARS
from api.state import ADMIN, AUDIT, OPENAPI, PRODUCER, REDIS, ROLES, SETTINGS, SIGNAL_INTAKE, TOKENS
from api.tokens import TokenStore
from api.tracing import tracing_middleware
from config import Settings
from processors.intake import SignalIntake
from streams import Producer, QueueAdmin, connect, tracing
from streams.server_version import RedisTooOld, check_redis_version

log = logging.getLogger(__name__)
# The longest query the document allows (jobIds), every character percent-encoded UTF-8
# (up to 12 bytes), plus the path: such a request line is read, not refused with a
# plain-text 400 before the app sees it (aiohttp's default limit is 8190 bytes).
MAX_REQUEST_LINE = 12 * JOB_IDS_MAX_CHARS + 8190


def create_app(settings: Settings) -> web.Application:
    """Raises api.tokens.TokenFileError when API_TOKENS_FILE cannot be read."""
    middlewares = [error_middleware, guard_middleware, auth_middleware]
    if tracing.enabled():
        middlewares.insert(0, tracing_middleware)
    app = web.Application(middlewares=middlewares, client_max_size=settings.api_max_body,
                          handler_args={"max_line_size": MAX_REQUEST_LINE})
    app[SETTINGS] = settings
    app[TOKENS] = TokenStore(settings.api_tokens, settings.api_tokens_file)
    app[SIGNAL_INTAKE] = SignalIntake(settings)
    app[ROLES] = {ep.handler: ep.role for ep in ENDPOINTS}
    app[OPENAPI] = build_openapi(settings, ENDPOINTS)
    for ep in ENDPOINTS:
        app.router.add_route(ep.method, ep.path, ep.handler)
    app.router.add_get(STATIC_ROUTE, static_file)  # the dashboard's script and style: no role, like GET /
    app.cleanup_ctx.append(redis_context)
    app.cleanup_ctx.append(events_context)
    app.on_shutdown.append(stop_event_streams)
    app.on_response_prepare.append(add_cors_headers)
    return app


async def redis_context(app: web.Application) -> AsyncIterator[None]:
    """The API's own Redis pool, and the engine objects that use it, for the app's life."""
    settings = app[SETTINGS]
    redis = connect(settings, max_connections=settings.api_redis_connections)
    app[REDIS] = redis
    app[PRODUCER] = Producer(redis, settings)
    app[ADMIN] = QueueAdmin(redis, settings)
    app[AUDIT] = AuditTrail(redis, settings.key_prefix, settings.api_audit_max_len)
    try:
        await check_redis_version(redis)
        await app[ADMIN].load_scripts()  # a script Redis rejects fails the start, not the first request
    except RedisTooOld:
        await redis.aclose()
        raise
    except Exception as exc:
        if not redis_unavailable(exc):
            await redis.aclose()
            raise
        # Requests answer 503 meanwhile; /readyz loads the scripts once Redis is back.
        log.warning("Redis at %s is unavailable (%s: %s); serving anyway, answering 503 until it is back",
                    settings.redis_location(), type(exc).__name__, exc)
    yield
    await redis.aclose()
