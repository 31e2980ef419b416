"""The oldest Redis the engine runs on (README: 7.0), checked when a worker process or
the API starts: before it, consumer groups report no `lag` (the workers' idle test and
the queue figures read it), and what fails then fails late and obscurely.
"""

from __future__ import annotations

import logging
import re

from redis.asyncio import Redis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from streams.errors import StreamsError

log = logging.getLogger(__name__)
REQUIRED_REDIS = (7, 0)


class RedisRefused(StreamsError):
    """The Redis server is one the engine must not run on; the message says why and
    what to change. A process's start fails with it (exit 2 from the CLI)."""


class RedisTooOld(RedisRefused):
    """The Redis server is older than REQUIRED_REDIS; the message names its version."""


async def check_redis_version(redis: Redis) -> str | None:
    """The server's version; RedisTooOld when it is older than REQUIRED_REDIS. None when
    Redis cannot be asked now: a process that starts during an outage waits it out as it
    would later, and is checked at its next start."""
    try:
        info = await redis.info("server")
    except (RedisConnectionError, RedisTimeoutError, OSError) as exc:
        log.warning("could not read the Redis version (%s); not checked", type(exc).__name__)
        return None
    version = str(info.get("redis_version", "unknown"))
    numbers = tuple(int(n) for n in re.findall(r"\d+", version)[:2])
    if numbers < REQUIRED_REDIS:
        required = ".".join(map(str, REQUIRED_REDIS))
        raise RedisTooOld(f"Redis {version} is older than {required}, the oldest tgjobs runs on; upgrade Redis")
    return version
