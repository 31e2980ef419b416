"""Where the test suite's Redis comes from; conftest.py turns this into fixtures.

Default: a private redis-server on a free loopback port (never the machine's 6379).
TEST_REDIS_URL=redis://... uses that server; TEST_REDIS=docker uses a redis:7 container.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from cli.embedded_redis import EmbeddedRedis

DOCKER_IMAGE = "redis:7"
REDIS_PORT = 6379

RedisServerFactory = Callable[..., EmbeddedRedis]
"""The ``redis_server_factory`` fixture: ``make(appendonly=..., extra_args=...)``."""


def source() -> str:
    """Which Redis the run uses: "url", "docker" or "embedded"."""
    if os.environ.get("TEST_REDIS_URL"):
        return "url"
    mode = os.environ.get("TEST_REDIS", "embedded").strip().lower() or "embedded"
    if mode not in ("docker", "embedded"):
        raise pytest.UsageError(f"TEST_REDIS is 'docker' or 'embedded', not {mode!r}")
    return mode


@contextmanager
def session_redis_url(data_dir: Path) -> Iterator[str]:
    """Yield the URL of the Redis shared by the whole run; tear it down afterwards."""
    match source():
        case "url":
            yield os.environ["TEST_REDIS_URL"]
        case "docker":
            with _docker_redis() as url:
                yield url
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
