"""Writes a caller is told about wait for replicas: with REDIS_WAIT_REPLICAS=N, every such
write (add, complete, fail, the processors' records, admin actions) is followed by
`WAIT N timeout` on the same connection, in the same pipeline, and counts as done only
when N replicas have it. Fewer in time: `NotReplicated`, which the API answers with 503
and the SDK raises; the write itself may still have happened (and may be lost if the
primary dies before a replica gets it), so callers retry idempotently.

Redis replication is asynchronous: without this setting, a write acknowledged by a
primary that dies before its replicas copied it is lost in the failover.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from redis.asyncio import RedisCluster
from redis.asyncio.client import Pipeline
from redis.asyncio.cluster import ClusterPipeline
from redis.exceptions import NoScriptError

from config import Settings
from streams.errors import StreamsError

Pipe = Pipeline | ClusterPipeline


class NotReplicated(StreamsError):
    """Fewer replicas than REDIS_WAIT_REPLICAS confirmed a write within REDIS_WAIT_TIMEOUT."""


class ReplicaWait:
    def __init__(self, redis: Any, settings: Settings) -> None:
        """`redis`: an async or sync client, plain or cluster."""
        self.redis = redis
        self.replicas = settings.redis_wait_replicas
        self.timeout_ms = max(int(settings.redis_wait_timeout * 1000), 1)

    @property
    def enabled(self) -> bool:
        return self.replicas > 0

    async def execute(self, pipe: Pipe, keys: Iterable[str]) -> list[Any]:
        """Runs `pipe` (its commands write `keys`), then waits for the replicas of every
        node the keys live on; returns the pipeline's replies. Errors raise as
        `pipe.execute()` raises them."""
        if self.enabled and isinstance(self.redis, RedisCluster):
            await self.redis.initialize()  # a no-op once the slots are known
        waits = self.append(pipe, keys)
        return self.check(await pipe.execute(), waits)

    async def call_script(self, sha: str, source: str, keys: list[str], args: list[Any]) -> Any:
        """EVALSHA of one script (loaded again once on NOSCRIPT: the call did nothing),
        waited for like `execute`."""
        for attempt in (1, 2):
            pipe = self.redis.pipeline(transaction=False)
            pipe.evalsha(sha, len(keys), *keys, *args)
            try:
                (reply,) = await self.execute(pipe, keys[:1])
                return reply
            except NoScriptError:
                if attempt == 2:
                    raise
                await self.redis.script_load(source)

    def append(self, pipe: Any, keys: Iterable[str]) -> int:
        """Appends the WAITs for `keys` to `pipe` (a sync or async pipeline of this
        client's kind): one per node they live on. Returns how many."""
        if not self.enabled:
            return 0
        if not hasattr(self.redis, "get_node_from_key"):
            pipe.execute_command("WAIT", self.replicas, self.timeout_ms)
            return 1
        nodes = {node.name: node for node in map(self.redis.get_node_from_key, keys)}
        for node in nodes.values():  # the pipeline sends a node's commands on one connection
            pipe.execute_command("WAIT", self.replicas, self.timeout_ms, target_nodes=node)
        return len(nodes)

    def check(self, replies: list[Any], waits: int) -> list[Any]:
        """The replies without the `waits` WAIT answers at their end; NotReplicated
        when one of those counts fewer replicas than asked for."""
        if not waits:
            return replies
        for acked in replies[-waits:]:
            if isinstance(acked, Exception):  # a pipeline run with raise_on_error=False
                raise acked
            if int(acked) < self.replicas:
                raise NotReplicated(f"{acked} of the {self.replicas} replicas REDIS_WAIT_REPLICAS asks for "
                                    f"confirmed the write within {self.timeout_ms} ms; it may be lost in a "
                                    f"failover: retry it")
        return replies[:-waits]
