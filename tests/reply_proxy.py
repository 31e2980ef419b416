"""A TCP proxy in front of a Redis that loses chosen replies: a request holding a chosen
byte string (a script's SHA, a command name) goes through and Redis applies it, then
the proxy reads the reply and closes the client's connection instead of passing it on,
as a network that drops a reply after the fact would. The client sees the connection
die and may send the request again.

The engine's clients send one command (or one pipeline) at a time per connection, so
the first bytes Redis answers after a chosen request are its reply.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

CHUNK = 65536


class ReplyDroppingProxy:
    def __init__(self, upstream_port: int, host: str = "127.0.0.1") -> None:
        self.host = host
        self.upstream_port = upstream_port
        self.port = 0
        self.dropped = 0
        self._rules: list[list[bytes | int]] = []  # [needle, replies left to drop]
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def url(self) -> str:
        return f"redis://{self.host}:{self.port}"

    def drop_replies_to(self, needle: bytes, times: int = 1) -> None:
        """The next `times` requests holding `needle` are applied but their replies lost."""
        self._rules.append([needle, times])

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, self.host, 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            for task in list(self._tasks):
                task.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)
            await self._server.wait_closed()

    def _chosen(self, request: bytes) -> bool:
        for rule in self._rules:
            needle, left = rule
            if left and needle in request:  # type: ignore[operator]
                rule[1] = int(left) - 1
                return True
        return False

    async def _serve(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        try:
            up_r, up_w = await asyncio.open_connection(self.host, self.upstream_port)
        except OSError:
            client_w.close()
            self._tasks.discard(task)
            return
        replies = asyncio.create_task(self._replies(up_r, client_w))
        try:
            while data := await client_r.read(CHUNK):
                chosen = self._chosen(data)
                if chosen:  # nothing more reaches the client from here on
                    replies.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await replies
                up_w.write(data)
                await up_w.drain()
                if chosen:
                    await up_r.read(CHUNK)  # Redis has applied the request: its reply is lost
                    self.dropped += 1
                    break
        except (OSError, asyncio.CancelledError):
            pass
        finally:
            replies.cancel()
            for writer in (client_w, up_w):
                writer.close()
            self._tasks.discard(task)

    @staticmethod
    async def _replies(up_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        with contextlib.suppress(OSError):
            while data := await up_r.read(CHUNK):
                client_w.write(data)
                await client_w.drain()


@contextlib.asynccontextmanager
async def reply_proxy(upstream_port: int) -> AsyncIterator[ReplyDroppingProxy]:
    proxy = ReplyDroppingProxy(upstream_port)
    await proxy.start()
    try:
        yield proxy
    finally:
        await proxy.stop()
