"""The embedded redis-server: start, stop, restart keeping AOF data, crash, ports."""

from __future__ import annotations

import os
import re
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
import redis.asyncio as aioredis
from redis_server import RedisServerFactory

from cli import embedded_redis
from cli import redis_binary
from cli.embedded_redis import EmbeddedRedis, RedisStartError
from cli.redis_binary import RedisServerNotFound, find_redis_server


def client(server: EmbeddedRedis) -> redis.Redis:
    return redis.Redis.from_url(server.url)


@pytest.fixture
def busy_port() -> Iterator[int]:
    """A loopback port held by a listening socket for the whole test."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((embedded_redis.LOOPBACK, 0))
        sock.listen()
        yield sock.getsockname()[1]


def test_find_redis_server_returns_an_executable() -> None:
    path = find_redis_server()
    assert Path(path).name == "redis-server"
    assert os.access(path, os.X_OK)


def test_missing_binary_names_the_install_command(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setattr(redis_binary, "FALLBACK_DIRS", ())
    with pytest.raises(RedisServerNotFound, match="apt-get install -y redis-server"):
        find_redis_server(install=False)


def test_start_ping_stop_with_private_dir() -> None:
    server = EmbeddedRedis(data_dir=None, appendonly=False)
    server.start()
    data_dir = server.data_dir
    try:
        assert server.running and server.pid is not None
        assert server.url == f"redis://127.0.0.1:{server.port}/0"
        with client(server) as conn:
            assert conn.ping() is True
    finally:
        server.stop()
    assert not server.running and server.pid is None
    assert not data_dir.exists()
    server.stop()  # idempotent


def test_context_manager_starts_and_stops(tmp_path: Path) -> None:
    with EmbeddedRedis(data_dir=tmp_path, appendonly=False) as server:
        with client(server) as conn:
            assert conn.ping() is True
        proc_pid = server.pid
    assert proc_pid is not None and not server.running
    assert (tmp_path / "redis.log").is_file()


def test_a_password_protected_server_is_ready_once_auth_and_ping_answer(tmp_path: Path) -> None:
    password = 'p w"\\:@/'  # spaces, quotes and URL characters survive the URL and the protocol
    with EmbeddedRedis(data_dir=tmp_path, appendonly=False, password=password) as server:
        assert embedded_redis.ping(server.port, password=password)
        assert not embedded_redis.ping(server.port)  # NOAUTH is not ready
        assert not embedded_redis.ping(server.port, password="wrong")
        with client(server) as conn:
            assert conn.ping() is True


def test_restart_keeps_aof_data(redis_server_factory: RedisServerFactory) -> None:
    server = redis_server_factory(appendonly=True)
    port, old_pid = server.port, server.pid
    with client(server) as conn:
        conn.set("kept", b"across-restart")
    server.restart()
    assert server.port == port and server.pid != old_pid
    with client(server) as conn:
        assert conn.get("kept") == b"across-restart"


def test_kill_then_restart_recovers_fsynced_data(
    redis_server_factory: RedisServerFactory,
) -> None:
    # appendfsync always: every acknowledged write is on disk before SIGKILL arrives.
    always = ("--appendfsync", "always")
    server = redis_server_factory(appendonly=True, extra_args=always)
    with client(server) as conn:
        conn.set("survivor", b"1")
    server.kill()
    assert not server.running
    with client(server) as conn, pytest.raises(redis.ConnectionError):
        conn.ping()
    server.restart()
    with client(server) as conn:
        assert conn.get("survivor") == b"1"


def test_two_servers_get_distinct_ports(
    redis_server_factory: RedisServerFactory,
) -> None:
    first = redis_server_factory(appendonly=False)
    second = redis_server_factory(appendonly=False)
    assert first.port != second.port
    for server in (first, second):
        with client(server) as conn:
            assert conn.ping() is True


def test_taken_fixed_port_fails_with_log_tail(tmp_path: Path, busy_port: int) -> None:
    server = EmbeddedRedis(data_dir=tmp_path, port=busy_port, appendonly=False)
    with pytest.raises(RedisStartError, match="Address already in use"):
        server.start()
    assert not server.running


def test_taken_picked_port_is_picked_again(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, busy_port: int
) -> None:
    server = EmbeddedRedis(data_dir=tmp_path, appendonly=False)
    monkeypatch.setattr(server, "_port", busy_port)  # as if taken since it was picked
    with server:
        assert server.port != busy_port
        with client(server) as conn:
            assert conn.ping() is True


def test_bad_option_reports_redis_error(tmp_path: Path) -> None:
    bogus = ("--no-such-directive", "1")
    server = EmbeddedRedis(data_dir=tmp_path, appendonly=False, extra_args=bogus)
    with pytest.raises(RedisStartError, match="Bad directive"):
        server.start()


def test_session_server_is_not_the_machine_redis(redis_url: str) -> None:
    if os.environ.get("TEST_REDIS_URL"):
        pytest.skip("TEST_REDIS_URL chooses the server explicitly")
    assert ":6379/" not in redis_url


async def test_session_client_and_key_prefix(
    redis: aioredis.Redis, key_prefix: str
) -> None:
    assert re.fullmatch(r"t[0-9a-f]{10}", key_prefix)
    key = f"{key_prefix}:probe"
    await redis.set(key, b"v", px=60_000)
    assert await redis.get(key) == b"v"
    await redis.delete(key)
