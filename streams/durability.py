"""What Redis promises to keep of the jobs: its eviction policy and its persistence.

A Redis whose `maxmemory-policy` may evict keys drops job records, streams and dead
letters under memory pressure, silently: a worker or the API refuses to start on one
(`RedisEvicts`) unless REDIS_ALLOW_EVICTION=1. Persistence (append-only file, fsync
policy, RDB save points) is reported by `tgjobs health` and /readyz, with a warning
when nothing is kept across a restart. The eviction policy comes from INFO, which a
least-privilege user may run; the persistence settings need CONFIG GET, and are
reported unknown when Redis refuses it (an ACL user, a managed service).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from config import Settings
from streams.server_version import RedisRefused

log = logging.getLogger(__name__)
SAFE_POLICY = "noeviction"


class RedisEvicts(RedisRefused):
    """Redis may evict keys (its maxmemory-policy is not noeviction)."""


@dataclass(frozen=True, slots=True)
class Durability:
    maxmemory_policy: str
    appendonly: str  # "yes" / "no"
    appendfsync: str | None  # None: CONFIG GET refused
    save: str | None  # RDB save points ("" none); None: CONFIG GET refused

    @property
    def evicts(self) -> bool:
        return self.maxmemory_policy != SAFE_POLICY

    def eviction_problem(self) -> str:
        return (f"Redis's maxmemory-policy is {self.maxmemory_policy}: under memory pressure it evicts keys and "
                f"jobs vanish; set maxmemory-policy {SAFE_POLICY} (CONFIG SET maxmemory-policy {SAFE_POLICY}, "
                f"and in redis.conf), or set REDIS_ALLOW_EVICTION=1 to run anyway")

    def warnings(self) -> list[str]:
        found = [self.eviction_problem()] if self.evicts else []
        if self.appendonly != "yes":
            if self.save == "":
                found.append("Redis persists nothing (appendonly no, no RDB save points): a restart loses "
                             "every job; set appendonly yes")
            else:
                found.append("Redis keeps no append-only file (appendonly no): a crash loses the jobs accepted "
                             "since the last snapshot; set appendonly yes")
        return found

    def as_dict(self) -> dict[str, Any]:
        return {"appendonly": self.appendonly, "appendfsync": self.appendfsync or "unknown",
                "maxmemoryPolicy": self.maxmemory_policy, "warnings": self.warnings()}


async def read_durability(redis: Redis) -> Durability:
    """The server's settings; on a cluster, the first node that evicts or keeps no
    append-only file speaks for all (every node must be safe)."""
    nodes = _per_node(await redis.info("memory", "persistence"))
    worst = next((n for n in nodes if n.get("maxmemory_policy") != SAFE_POLICY), None) \
        or next((n for n in nodes if not n.get("aof_enabled")), nodes[0])
    try:
        config = _merged(_per_node(await redis.config_get("appendfsync")) + _per_node(await redis.config_get("save")))
    except ResponseError:  # NOPERM, or CONFIG renamed away
        config = {}
    return Durability(str(worst.get("maxmemory_policy", "unknown")), "yes" if worst.get("aof_enabled") else "no",
                      config.get("appendfsync"), config.get("save"))


async def check_eviction(redis: Redis, settings: Settings) -> Durability | None:
    """At start: RedisEvicts when Redis may evict keys, unless REDIS_ALLOW_EVICTION=1
    (then the policy is logged as a warning; settings.start_warnings() says so too).
    None when Redis cannot be asked now (checked at the next start, and by /readyz)."""
    try:
        durability = await read_durability(redis)
    except (RedisConnectionError, RedisTimeoutError, OSError) as exc:
        log.warning("could not read Redis's maxmemory-policy (%s); not checked", type(exc).__name__)
        return None
    if durability.evicts:
        if not settings.redis_allow_eviction:
            raise RedisEvicts(durability.eviction_problem())
        log.warning("REDIS_ALLOW_EVICTION=1: running although Redis's maxmemory-policy is %s",
                    durability.maxmemory_policy)
    return durability


def _per_node(reply: dict[str, Any]) -> list[dict[str, Any]]:
    """A cluster client answers per node ({node: reply}); a plain client, once."""
    if reply and all(isinstance(v, dict) for v in reply.values()):
        return list(reply.values())
    return [reply]


def _merged(replies: list[dict[str, Any]]) -> dict[str, Any]:
    merged: dict[str, Any] = {}
    for reply in replies:
        merged.update(reply)
    return merged
