"""Where the test suite's Redis comes from; conftest.py turns this into fixtures.

Default: a private redis-server on a free loopback port (never the machine's 6379).
TEST_REDIS_URL=redis://... uses that server; TEST_REDIS=docker uses a redis:7 container;
TEST_REDIS=cluster a private 3-master Redis Cluster (the URL names one node).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

import redis
import redis.asyncio as aioredis

from cli.embedded_cluster import EmbeddedCluster
from cli.embedded_redis import EmbeddedRedis

DOCKER_IMAGE = "redis:7"
REDIS_PORT = 6379

RedisServerFactory = Callable[..., EmbeddedRedis]
"""The ``redis_server_factory`` fixture: ``make(appendonly=..., extra_args=...)``."""


def source() -> str:
    """Which Redis the run uses: "url", "docker", "cluster" or "embedded"."""
    if os.environ.get("TEST_REDIS_URL"):
        return "url"
    mode = os.environ.get("TEST_REDIS", "embedded").strip().lower() or "embedded"
    if mode not in ("docker", "embedded", "cluster"):
        raise pytest.UsageError(f"TEST_REDIS is 'docker', 'embedded' or 'cluster', not {mode!r}")
    return mode


def on_cluster() -> bool:
    return source() == "cluster"


def client(url: str, *, decode_responses: bool) -> aioredis.Redis | aioredis.RedisCluster:
    """A test's own client of the run's Redis: a cluster client on a cluster."""
    cls = aioredis.RedisCluster if on_cluster() else aioredis.Redis
    return cls.from_url(url, decode_responses=decode_responses)


def sync_client(url: str, *, decode_responses: bool) -> redis.Redis | redis.RedisCluster:
    cls = redis.RedisCluster if on_cluster() else redis.Redis
    return cls.from_url(url, decode_responses=decode_responses)


@contextmanager
def session_redis_url(data_dir: Path) -> Iterator[str]:
    """Yield the URL of the Redis shared by the whole run; tear it down afterwards."""
    match source():
        case "url":
            yield os.environ["TEST_REDIS_URL"]
        case "docker":
            with _docker_redis() as url:
                yield url
        case "cluster":
            with EmbeddedCluster(3, data_dir=data_dir) as cluster:
                yield cluster.url
        case _:
            with EmbeddedRedis(data_dir=data_dir, appendonly=False) as server:
                yield server.url


@contextmanager
def _docker_redis() -> Iterator[str]:
    try:
        import docker
        from testcontainers.redis import RedisContainer

        docker.from_env().ping()
    except Exception as err:  # any failure here means "no usable Docker engine"
        pytest.skip(f"TEST_REDIS=docker but Docker is not usable: {err}")
    with RedisContainer(DOCKER_IMAGE) as container:
        host = container.get_container_host_ip()
        port = container.get_exposed_port(REDIS_PORT)
        yield f"redis://{host}:{port}/0"
