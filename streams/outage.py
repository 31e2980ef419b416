"""Riding out a Redis that is away: which errors mean "try again", and how long to wait.

A worker keeps running while Redis restarts, fails over or is unreachable: it logs
one line when the outage starts and one when it ends, and retries with capped backoff.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

from redis.exceptions import (AskError, BusyLoadingError, ClusterError, ConnectionError, ReadOnlyError,
                              RedisClusterUnreachableError, ResponseError, SlotNotCoveredError, TryAgainError)
from redis.exceptions import TimeoutError as RedisTimeoutError

from streams.replication import NotReplicated

T = TypeVar("T")
FIRST_DELAY_S = 0.1
MAX_DELAY_S = 5.0


_FAILOVER = (
    ClusterError,  # CLUSTERDOWN, and the client giving up on redirections mid-failover
    AskError,  # MOVED / ASK left over when the client's retries ran out
    TryAgainError,  # a multi-key command during resharding
    SlotNotCoveredError,  # no node serves the slot (yet)
    RedisClusterUnreachableError,  # no startup node answers
    NotReplicated,  # fewer replicas than REDIS_WAIT_REPLICAS have a write yet
)


def is_transient(exc: BaseException) -> bool:
    """True for errors that go away by themselves: lost connections, a server still
    loading its data, a replica promoted mid-write, a full server (OOM), a cluster or
    Sentinel failover in progress."""
    if isinstance(exc, (ConnectionError, RedisTimeoutError, BusyLoadingError, ReadOnlyError,
                        ConnectionResetError, OSError, *_FAILOVER)):
        return True
    return isinstance(exc, ResponseError) and str(exc).startswith(("OOM", "LOADING", "READONLY",
                                                                   "MASTERDOWN", "TRYAGAIN", "CLUSTERDOWN"))


def is_missing_group(exc: BaseException) -> bool:
    """The stream or its consumer group vanished (flushed, or Redis restarted empty)."""
    return isinstance(exc, ResponseError) and "NOGROUP" in str(exc)


class Outage:
    """Tracks one component's outage: the delay before the next try, and the log lines."""

    def __init__(self, log: logging.Logger, what: str) -> None:
        self._log = log
        self._what = what
        self._since: float | None = None
        self._delay = FIRST_DELAY_S

    def failed(self, exc: BaseException) -> float:
        """Records a failed try; returns how long to wait before the next."""
        if self._since is None:
            self._since = time.monotonic()
            self._log.warning("%s: Redis unavailable (%s: %s); retrying with backoff up to %.0fs",
                              self._what, type(exc).__name__, exc, MAX_DELAY_S)
            self._delay = FIRST_DELAY_S
        else:
            self._delay = min(self._delay * 2, MAX_DELAY_S)
        return self._delay

    def succeeded(self) -> None:
        if self._since is not None:
            self._log.warning("%s: Redis reachable again after %.1fs", self._what,
                              time.monotonic() - self._since)
            self._since = None

    async def retry(self, operation: Callable[[], Awaitable[T]]) -> T:
        """Runs `operation` until it gets through; transient errors are waited out."""
        while True:
            try:
                result = await operation()
            except Exception as exc:
                if not is_transient(exc):
                    raise
                await asyncio.sleep(self.failed(exc))
            else:
                self.succeeded()
                return result
