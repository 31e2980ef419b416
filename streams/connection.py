"""Redis clients for the engine, built from settings: a plain client, a Redis Cluster
client (REDIS_CLUSTER, detected from INFO cluster by default) or the primary named by
Sentinel (REDIS_SENTINELS). Every caller gets the same command API from either.

Socket read timeouts sit above the blocking-read time (a shorter one would turn
every idle block into an error); keepalive and health checks catch half-open
connections. Each queue worker gets its own pool, so a slow queue never starves
another of connections and blocking readers never share the API's pool.
"""

from __future__ import annotations

import logging
from functools import cache
from typing import Any, TypeAlias

import hiredis
import redis as sync_redis
from redis.asyncio import BlockingConnectionPool, Redis, RedisCluster, Sentinel
from redis.asyncio.connection import AbstractConnection
from redis.exceptions import DataError, RedisError

from config import Settings
from streams.sentinel import PrimaryFollowingPool, SyncPrimaryFollowingPool, name_by_address

log = logging.getLogger(__name__)

Client: TypeAlias = Redis | RedisCluster

SOCKET_MARGIN_S = 5.0
CONNECT_TIMEOUT_S = 5.0
HEALTH_CHECK_INTERVAL_S = 30
CLUSTER_NODE_CONNECTIONS = 128


def connect(settings: Settings, max_connections: int = 16) -> Client:
    """The engine's client for the configured deployment, replies decoded to str.
    `max_connections` bounds the pool (per node on a cluster)."""
    if settings.redis_sentinel_mode:
        return _sentinel_client(settings, max_connections)
    if is_cluster(settings):
        return _cluster_client(settings, max_connections)
    return _plain_client(settings, max_connections)


def connect_sync(settings: Settings) -> sync_redis.Redis | sync_redis.RedisCluster:
    """redis-py's synchronous client for the same deployment (the sync SDK's)."""
    options = {"decode_responses": True, "socket_connect_timeout": CONNECT_TIMEOUT_S, "socket_keepalive": True}
    if settings.redis_sentinel_mode:
        sentinel = sync_redis.Sentinel(list(settings.redis_sentinels), sentinel_kwargs=_sentinel_auth(settings),
                                       **_primary_auth(settings), **options)
        name_by_address(sentinel.sentinels)
        return sentinel.master_for(settings.redis_sentinel_master, connection_pool_class=SyncPrimaryFollowingPool)
    if is_cluster(settings):
        return sync_redis.RedisCluster.from_url(settings.redis_connection_url(), **options)
    return sync_redis.Redis.from_url(settings.redis_connection_url(), **options)


def by_slot(client: Client, keys: list[str]) -> list[list[str]]:
    """`keys` grouped so that each group may go in one multi-key command: all of them on
    one server, one group per hash slot on a cluster."""
    if not isinstance(client, RedisCluster):
        return [keys] if keys else []
    groups: dict[int, list[str]] = {}
    for key in keys:
        groups.setdefault(client.keyslot(key), []).append(key)
    return list(groups.values())


def is_cluster(settings: Settings) -> bool:
    """REDIS_CLUSTER=yes/no, or (auto) whether the server at the URL has cluster mode on.
    Asked once per URL and process; a server that cannot be reached is taken for a
    single server, logged (set REDIS_CLUSTER to start before a cluster is up)."""
    if settings.redis_cluster != "auto":
        return settings.redis_cluster == "yes"
    if settings.redis_sentinel_mode or settings.redis_connection_url().startswith("unix:"):
        return False
    return _cluster_enabled(settings.redis_connection_url(), settings.redacted_redis_url())


@cache
def _cluster_enabled(url: str, redacted: str) -> bool:
    client = sync_redis.Redis.from_url(url, socket_connect_timeout=CONNECT_TIMEOUT_S,
                                       socket_timeout=CONNECT_TIMEOUT_S)
    try:
        return int(client.info("cluster").get("cluster_enabled", 0)) == 1
    except RedisError as exc:
        _cluster_enabled.cache_clear()  # ask again next time
        log.debug("cannot tell whether Redis at %s is a cluster (%s: %s); taking it for a single "
                  "server (set REDIS_CLUSTER=yes or no to skip the question)", redacted, type(exc).__name__, exc)
        return False
    finally:
        client.close()


def _connection_options(settings: Settings) -> dict[str, Any]:
    return {"decode_responses": True,
            "socket_timeout": settings.read_block + SOCKET_MARGIN_S,
            "socket_connect_timeout": CONNECT_TIMEOUT_S,
            "socket_keepalive": True,
            "health_check_interval": HEALTH_CHECK_INTERVAL_S}


def _plain_client(settings: Settings, max_connections: int) -> Redis:
    """A client whose pool waits for a free connection rather than failing when full."""
    pool = BlockingConnectionPool.from_url(settings.redis_connection_url(), max_connections=max_connections,
                                           timeout=None, **_connection_options(settings))
    pool.connection_class = _packed_by_hiredis(pool.connection_class)  # the URL's scheme picked the class
    return Redis(connection_pool=pool)


def _cluster_client(settings: Settings, max_connections: int) -> RedisCluster:
    """redis-py's cluster pools fail a command when a node's pool is full rather than wait
    for a connection, so each node's pool allows at least CLUSTER_NODE_CONNECTIONS: a
    worker's handlers, pipelining to many companies' slots at once, outran 16."""
    client = RedisCluster.from_url(settings.redis_connection_url(),
                                   max_connections=max(max_connections, CLUSTER_NODE_CONNECTIONS),
                                   **_connection_options(settings))
    # Nodes found later are built from these options; the startup node already was.
    packed = _packed_by_hiredis(client.connection_kwargs["connection_class"])
    client.connection_kwargs["connection_class"] = packed
    for node in client.nodes_manager.startup_nodes.values():
        node.connection_class = packed
    return client


def _sentinel_client(settings: Settings, max_connections: int) -> Redis:
    """The primary the sentinels name, followed through a failover (streams.sentinel)."""
    sentinel = Sentinel(list(settings.redis_sentinels), sentinel_kwargs=_sentinel_auth(settings),
                        **_primary_auth(settings), **_connection_options(settings))
    name_by_address(sentinel.sentinels)
    client = sentinel.master_for(settings.redis_sentinel_master, redis_class=Redis,
                                 connection_pool_class=PrimaryFollowingPool, max_connections=max_connections,
                                 timeout=None)
    pool = client.connection_pool
    pool.connection_class = _packed_by_hiredis(pool.connection_class)
    return client


def _sentinel_auth(settings: Settings) -> dict[str, Any]:
    """How to talk to the sentinels themselves (their own user and password)."""
    password = settings.redis_sentinel_password
    return {"username": settings.redis_sentinel_username,
            "password": password.get_secret_value() if password else None,
            "socket_connect_timeout": CONNECT_TIMEOUT_S, "socket_timeout": CONNECT_TIMEOUT_S}


def _primary_auth(settings: Settings) -> dict[str, Any]:
    """The primary's user, password and db: from REDIS_URL when it is set (its host is
    ignored: the sentinels name the primary), else REDIS_USERNAME / REDIS_PASSWORD."""
    url = sync_redis.connection.parse_url(settings.redis_connection_url())
    return {"username": url.get("username"), "password": url.get("password"), "db": url.get("db", 0)}


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
