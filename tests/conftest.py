"""Shared fixtures: one real Redis per session, a unique key prefix per test, an async
client per test, and a factory for private servers that tests may kill or restart."""

from __future__ import annotations

import os
import logging
import secrets
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aioredis
from pg_server import PostgresUnavailable, TemporaryPostgres, postgres_url
from redis_server import RedisServerFactory, client, session_redis_url, source

from cli.embedded_redis import EmbeddedRedis
from cli.redis_binary import RedisServerNotFound, find_redis_server
from config import DEFAULT_POLICIES, Settings

KEY_PREFIX_HEX_BYTES = 5  # 10 hex chars after the leading "t"


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """URL of the Redis shared by every test; tests keep apart by ``key_prefix``."""
    with session_redis_url(tmp_path_factory.mktemp("redis")) as url:
        yield url


@pytest.fixture
def key_prefix() -> str:
    """A prefix no other test uses, e.g. ``t3f9a0c1b2d`` (letters and digits only)."""
    return "t" + secrets.token_hex(KEY_PREFIX_HEX_BYTES)


@pytest.fixture
async def redis(redis_url: str) -> AsyncIterator[aioredis.Redis]:
    """An async client on the session's Redis (bytes replies), closed after the test."""
    own = client(redis_url, decode_responses=False)
    try:
        yield own
    finally:
        await own.aclose()


@pytest.fixture
def redis_server_factory(tmp_path: Path) -> Iterator[RedisServerFactory]:
    """Make started private servers (own port and dir) that are stopped at teardown."""
    servers: list[EmbeddedRedis] = []

    def make(
        *, appendonly: bool = True, extra_args: Sequence[str] = ()
    ) -> EmbeddedRedis:
        try:
            find_redis_server()
        except RedisServerNotFound as err:
            if source() == "embedded":
                raise
            pytest.skip(str(err))
        server = EmbeddedRedis(
            data_dir=tmp_path / f"redis-{len(servers)}",
            appendonly=appendonly,
            extra_args=extra_args,
        )
        servers.append(server)
        server.start()
        return server

    yield make
    for server in servers:
        server.stop()


TEST_QUEUE = "jobs"
"""A regular queue (job records on) for engine tests: the signals row with records."""


@pytest.fixture
def make_settings(redis_url: str, key_prefix: str) -> Callable[..., Settings]:
    """Settings on the session's Redis under this test's prefix, with fast timings.

    ``make_settings(jobs={"attempts": 2}, read_block=1)``: keyword arguments named
    after a queue (or ``jobs``, the test queue) are merged onto that queue's policy
    row, the rest are settings."""

    def make(**overrides: Any) -> Settings:
        queues = {name: overrides.pop(name) for name in list(overrides)
                  if name in DEFAULT_POLICIES or name == TEST_QUEUE}
        test_row = {**DEFAULT_POLICIES["signals"].model_dump(), "records": True, "batch_size": 100}
        queues[TEST_QUEUE] = {**test_row, **queues.get(TEST_QUEUE, {})}
        return Settings(redis_url=redis_url, key_prefix=key_prefix, read_block=1,
                        shutdown_grace=5, queues=queues, **overrides)

    return make


@pytest.fixture
async def engine_redis(redis_url: str) -> AsyncIterator[aioredis.Redis]:
    """A client with str replies, as the engine uses."""
    own = client(redis_url, decode_responses=True)
    try:
        yield own
    finally:
        await own.aclose()


@pytest.fixture(scope="session")
def postgres_server_url() -> Iterator[str]:
    """URL of the PostgreSQL shared by every test (a private server, or TEST_DATABASE_URL);
    tests keep apart by schema (``DATABASE_SCHEMA`` = the test's key prefix)."""
    try:
        with postgres_url(os.environ.get("TEST_DATABASE_URL")) as (url, _):
            yield url
    except PostgresUnavailable as exc:
        pytest.skip(str(exc))


@pytest.fixture
def private_postgres() -> Iterator[TemporaryPostgres]:
    """A PostgreSQL of this test's own, which it may stop and start again."""
    try:
        server = TemporaryPostgres()
    except PostgresUnavailable as exc:
        pytest.skip(str(exc))
    try:
        server.start()
        yield server
    finally:
        server.close()


@pytest.fixture
def restore_logging() -> Iterator[None]:
    """The root logger's handlers and level as they were, after a test that configures logging."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    for handler in list(root.handlers):
        root.removeHandler(handler)
    for handler in handlers:
        root.addHandler(handler)
    root.setLevel(level)
