"""Redis clients for the engine, built from settings.

Socket read timeouts sit above the blocking-read time (a shorter one would turn
every idle block into an error); keepalive and health checks catch half-open
connections. Each queue worker gets its own pool, so a slow queue never starves
another of connections and blocking readers never share the API's pool.
"""

from __future__ import annotations

from redis.asyncio import BlockingConnectionPool, Redis

from config import Settings

SOCKET_MARGIN_S = 5.0
CONNECT_TIMEOUT_S = 5.0
HEALTH_CHECK_INTERVAL_S = 30


def connect(settings: Settings, max_connections: int = 16) -> Redis:
    """A client whose pool waits for a free connection rather than failing when full."""
    pool = BlockingConnectionPool.from_url(
        settings.redis_connection_url(),
        max_connections=max_connections,
        timeout=None,
        decode_responses=True,
        socket_timeout=settings.read_block + SOCKET_MARGIN_S,
        socket_connect_timeout=CONNECT_TIMEOUT_S,
        socket_keepalive=True,
        health_check_interval=HEALTH_CHECK_INTERVAL_S,
    )
    return Redis(connection_pool=pool)
