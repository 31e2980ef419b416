"""Connection pools for the primary that Redis Sentinel names, which follow a failover.

redis-py's Sentinel pool asks the sentinels for the primary only when it opens a
connection, so connections it already holds stay on a primary demoted by a coordinated
failover (SENTINEL FAILOVER): that server keeps taking writes until a sentinel next looks
at it and turns it into a replica, some ten seconds later, and those writes are lost
then. These pools also ask the sentinels at most once a second while they are used, and
when the sentinels name another primary, close every connection, those in use too; the
commands on them fail with a connection error (transient: retried) and the next
connections go to the new primary.
"""

from __future__ import annotations

import logging
import time
from functools import cache
from typing import Any

import redis.sentinel as sync_sentinel
from redis.asyncio import BlockingConnectionPool
from redis.asyncio.sentinel import SentinelConnectionPool
from redis.exceptions import ConnectionError, TimeoutError

log = logging.getLogger(__name__)

FOLLOW_EVERY_S = 1.0

Address = tuple[str, int]


class _Following:
    """When to ask the sentinels again, and what to do with their answer."""

    service_name: str
    _asked_at = float("-inf")
    _followed: Address | None = None

    def _due(self) -> bool:
        now = time.monotonic()
        if now - self._asked_at < FOLLOW_EVERY_S:
            return False
        self._asked_at = now
        return True

    def _moved(self, named: Address) -> bool:
        """True when the sentinels name another primary than the one followed so far."""
        previous, self._followed = self._followed, named
        if previous is None or previous == named:
            return False
        log.warning("the sentinels name %s:%s as primary %r now (was %s:%s); closing the connections to the old one",
                    *named, self.service_name, *previous)
        return True


class PrimaryFollowingPool(_Following, SentinelConnectionPool, BlockingConnectionPool):
    """The engine's pool: waits for a free connection when full (as the plain client's
    pool does) rather than failing, and follows the primary."""

    async def get_connection(self, *args: Any, **kwargs: Any) -> Any:
        if self._due():
            try:
                named = await self.sentinel_manager.discover_master(self.service_name)
            except (ConnectionError, TimeoutError):
                pass  # no primary named now (a failover under way), or no sentinel answers
            else:
                if self._moved(named):
                    await self.disconnect(inuse_connections=True)
        return await super().get_connection(*args, **kwargs)


class SyncPrimaryFollowingPool(_Following, sync_sentinel.SentinelConnectionPool):
    """The same for redis-py's synchronous client (the sync SDK)."""

    def get_connection(self, *args: Any, **kwargs: Any) -> Any:
        if self._due():
            try:
                named = self.sentinel_manager.discover_master(self.service_name)
            except (ConnectionError, TimeoutError):
                pass
            else:
                if self._moved(named):
                    self.disconnect(inuse_connections=True)
        return super().get_connection(*args, **kwargs)


class _NamedByAddress:
    """A sentinel's client that errors name by its address: redis-py's repr of a client
    lists every connection option, which made "no master found" a screenful per sentinel."""

    connection_pool: Any

    def __repr__(self) -> str:
        options = self.connection_pool.connection_kwargs
        return f"sentinel {options['host']}:{options['port']}"


def name_by_address(clients: list[Any]) -> None:
    """Makes the sentinels' clients (a Sentinel's `sentinels`) print as their address."""
    for client in clients:
        client.__class__ = _named_class(type(client))


@cache
def _named_class(client_class: type) -> type:
    return type(f"Sentinel{client_class.__name__}", (_NamedByAddress, client_class), {})
