"""The engine's Redis clients pack commands with hiredis: the same bytes as redis-py's
own packer, the same error for what cannot be sent, and real round trips."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from redis.asyncio import Redis, RedisCluster
from redis.asyncio.connection import AbstractConnection, Connection
from redis.exceptions import DataError

from config import Settings
from streams import connect

COMMANDS = [
    ("SET", "k", "ünïcode", "PX", 1000),
    ("XADD", "{tg:signals}:stream:normal", "*", "data", b'{"n":1}'),
    ("ZADD", "z", 1.5, "a", 1e20, "b", -3, "c"),
    ("CONFIG GET", "maxmemory"),
    (b"CLIENT SETNAME", "w-1"),
    ("SET", "k", bytearray(b"raw"), memoryview(b"view")),
]


@pytest.mark.parametrize("command", COMMANDS)
async def test_commands_pack_as_redis_py_packs_them(make_settings: Callable[..., Settings],
                                                    command: tuple[object, ...]) -> None:
    client = connect(make_settings())
    try:
        connection = await a_connection(client)
        assert type(connection).__name__ == "HiredisConnection"
        packed = connection.pack_command(*command)
        assert b"".join(packed) == b"".join(map(bytes, Connection().pack_command(*command)))
    finally:
        await client.aclose()


async def a_connection(client: Redis | RedisCluster) -> AbstractConnection:
    """A connection as the client makes them (on a cluster, to a node it discovered)."""
    if isinstance(client, RedisCluster):
        await client.initialize()
        return client.get_default_node().acquire_connection()
    return client.connection_pool.make_connection()


async def test_values_that_cannot_be_sent_raise_data_error(make_settings: Callable[..., Settings]) -> None:
    client = connect(make_settings())
    try:
        with pytest.raises(DataError):
            await client.set("k", None)  # type: ignore[arg-type]
    finally:
        await client.aclose()


async def test_round_trips_through_a_real_redis(make_settings: Callable[..., Settings], key_prefix: str) -> None:
    client = connect(make_settings())
    try:
        key = f"{key_prefix}:packed"
        await client.hset(key, mapping={"text": "ünïcode ✓", "number": 2.5, "big": 2**62})
        assert await client.hgetall(key) == {"text": "ünïcode ✓", "number": "2.5", "big": str(2**62)}
        pipe = client.pipeline(transaction=False)
        pipe.hget(key, "text").hincrby(key, "big", 1)
        assert await pipe.execute() == ["ünïcode ✓", 2**62 + 1]
        await client.delete(key)
    finally:
        await client.aclose()
