"""Redis clients for the engine, built from settings.

Socket read timeouts sit above the blocking-read time (a shorter one would turn
every idle block into an error); keepalive and health checks catch half-open
connections. Each queue worker gets its own pool, so a slow queue never starves
another of connections and blocking readers never share the API's pool.
"""

from __future__ import annotations

from functools import cache
from typing import Any

import hiredis
from redis.asyncio import BlockingConnectionPool, Redis
from redis.asyncio.connection import AbstractConnection
from redis.exceptions import DataError

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
    pool.connection_class = _packed_by_hiredis(pool.connection_class)  # the URL's scheme picked the class
    return Redis(connection_pool=pool)


class _HiredisPacking:
    """Packs commands in C with hiredis, as redis-py's synchronous client does; its
    asyncio client packs them in Python, which was a fifth of the workers' CPU (every
    key, argument and XACK id goes through it). Same bytes on the wire."""

    def pack_command(self, *args: Any) -> list[bytes]:
        # A command name holding its subcommand ("CONFIG GET") goes as separate words.
        if isinstance(args[0], str):
            args = (*args[0].encode().split(), *args[1:])
        elif b" " in args[0]:
            args = (*args[0].split(), *args[1:])
        try:
            return [hiredis.pack_command(tuple(bytes(a) if isinstance(a, (bytearray, memoryview)) else a
                                               for a in args))]
        except TypeError as exc:  # None, a bool, ...: redis-py's own error for what it cannot send
            raise DataError(f"{exc} (command {args[0]!r})") from None


@cache
def _packed_by_hiredis(connection_class: type[AbstractConnection]) -> type[AbstractConnection]:
    return type(f"Hiredis{connection_class.__name__}", (_HiredisPacking, connection_class), {})
