"""GET /api/events: the queues' event streams as server-sent events, for a page that
updates live instead of polling every counter.

    id: <entry id>            event: job              data: {"queue": ..., "event": ..., "job": ..., ...}
    event: figures            data: the GET /api/jobs overview, at connect and after events (at most every 2 s)
    : keep-alive              a comment when nothing was sent for 15 s

The answer starts at the present: each events stream's newest id is read once, then
one blocking XREAD on every stream at once (one per slot on a Redis Cluster) passes the
last ids seen (never "$", which would drop what is added between two reads). The reads
use their own pool (cap MAX_EVENT_STREAMS, one connection each; on a cluster, one per
slot and stream); past it the answer is a 503. One token holds at most
API_EVENTS_PER_TOKEN of them (a 429 past it), so one viewer cannot take every slot. A stream ends
when the client goes away or the app shuts down.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator
from typing import Any

import orjson
from aiohttp import web

from api.errors import REQUEST_ID_HEADER, TooMany, Unavailable, redis_unavailable
from api.routes.common import now_ms
from api.schemas import JobsOverview
from api.state import ADMIN, EVENTS, PRINCIPAL, REQUEST_ID, SETTINGS, EventStreams
from streams import connect
from streams.connection import by_slot, is_cluster

log = logging.getLogger(__name__)

MAX_EVENT_STREAMS = 64
FIGURES_INTERVAL_S = 2.0
KEEP_ALIVE_S = 15.0
READ_COUNT = 100  # entries per stream per read
EMPTY_STREAM_ID = "0-0"


async def events_context(app: web.Application) -> AsyncIterator[None]:
    """The event streams' own pool, for the app's life; shutdown ends the open streams."""
    settings = app[SETTINGS]
    # On a cluster each open stream holds a connection per slot it reads, at worst one per queue partition.
    slots = sum(policy.partitions for policy in settings.queues.values()) if is_cluster(settings) else 1
    streams = EventStreams(connect(settings, max_connections=MAX_EVENT_STREAMS * slots))
    app[EVENTS] = streams
    yield
    streams.stopping.set()
    await streams.redis.aclose()


async def stop_event_streams(app: web.Application) -> None:
    """on_shutdown: the open streams end now, before the server waits for its handlers."""
    app[EVENTS].stopping.set()


async def live_events(request: web.Request) -> web.StreamResponse:
    streams = request.app[EVENTS]
    caller = request[PRINCIPAL].name
    per_caller = request.app[SETTINGS].api_events_per_token
    if streams.open >= MAX_EVENT_STREAMS:
        raise Unavailable(f"{MAX_EVENT_STREAMS} event streams are open already; retry later")
    if streams.by_caller[caller] >= per_caller:
        raise TooMany(f"{caller} has {per_caller} event streams open already (API_EVENTS_PER_TOKEN); "
                      "close one or retry later")
    streams.open += 1
    streams.by_caller[caller] += 1
    try:
        return await _serve(request, streams)
    finally:
        streams.open -= 1
        streams.by_caller[caller] -= 1
        if not streams.by_caller[caller]:
            del streams.by_caller[caller]


async def _serve(request: web.Request, streams: EventStreams) -> web.StreamResponse:
    admin, settings = request.app[ADMIN], request.app[SETTINGS]
    queue_of = {k.events: queue for queue in settings.queues for k in admin.partitions(queue)}
    # Read before the answer starts, so an unreachable Redis is a plain 503.
    last_ids = await _newest_ids(streams, list(queue_of))
    figures = await _figures(request)

    response = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache",
                                           "X-Accel-Buffering": "no", REQUEST_ID_HEADER: request[REQUEST_ID]})
    await response.prepare(request)
    block_ms = max(1, int(settings.read_block * 1000))
    try:
        await response.write(figures)
        last_sent = last_figures = time.monotonic()
        figures_due = False
        while not streams.stopping.is_set():
            if request.transport is None or request.transport.is_closing():
                break
            now = time.monotonic()
            wait_s = KEEP_ALIVE_S - (now - last_sent)
            if figures_due:
                wait_s = min(wait_s, FIGURES_INTERVAL_S - (now - last_figures))
            reply = await _read_or_stop(streams, last_ids, max(1, min(block_ms, int(wait_s * 1000))))
            if reply is None:
                break
            chunks = []
            for key, entries in reply:
                for entry_id, fields in entries:
                    last_ids[key] = entry_id
                    chunks.append(_job_event(queue_of[key], entry_id, fields))
            figures_due = figures_due or bool(chunks)
            now = time.monotonic()
            if figures_due and now - last_figures >= FIGURES_INTERVAL_S:
                chunks.append(await _figures(request))
                last_figures, figures_due = now, False
            if not chunks and now - last_sent >= KEEP_ALIVE_S:
                chunks.append(b": keep-alive\n\n")
            if chunks:
                await response.write(b"".join(chunks))
                last_sent = now
    except ConnectionError:
        pass  # the client went away
    except Exception as exc:
        if not redis_unavailable(exc):
            raise
        # The answer has started: it ends, and the client's EventSource connects again.
        log.warning("request %s: event stream ended, Redis unavailable: %s: %s", request[REQUEST_ID],
                    type(exc).__name__, exc)
    with contextlib.suppress(ConnectionError):
        await response.write_eof()
    return response


async def _newest_ids(streams: EventStreams, keys: list[str]) -> dict[str, str]:
    async with streams.redis.pipeline(transaction=False) as pipe:
        for key in keys:
            pipe.xrevrange(key, "+", "-", count=1)
        replies = await pipe.execute()
    return {key: (reply[0][0] if reply else EMPTY_STREAM_ID) for key, reply in zip(keys, replies)}


async def _read_or_stop(streams: EventStreams, last_ids: dict[str, str], block_ms: int) -> list[Any] | None:
    """The entries after `last_ids` (waiting up to block_ms); None once the app stops.
    One XREAD per Cluster slot (a read may not span slots), all blocking at once: the
    first to answer ends the wait and the others are cancelled (their connections are
    dropped and made again)."""
    reads = [asyncio.ensure_future(streams.redis.xread({key: last_ids[key] for key in group},
                                                       count=READ_COUNT, block=block_ms))
             for group in by_slot(streams.redis, list(last_ids))]
    stop = asyncio.ensure_future(streams.stopping.wait())
    try:
        await asyncio.wait((*reads, stop), return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in (*reads, stop):
            if not task.done():
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
    answered = [read for read in reads if read.done() and not read.cancelled()]
    if not answered:
        return None
    return [entry for read in answered for entry in (read.result() or [])]


def _job_event(queue: str, entry_id: str, fields: dict[str, str]) -> bytes:
    data = {"queue": queue, "event": fields.get("event", ""), "job": fields.get("job", ""),
            **{name: value for name, value in fields.items() if name not in ("event", "job", "queue")}}
    return b"id: " + entry_id.encode() + b"\nevent: job\ndata: " + orjson.dumps(data) + b"\n\n"


async def _figures(request: web.Request) -> bytes:
    overview = JobsOverview.of(await request.app[ADMIN].all_status(), now_ms())
    return b"event: figures\ndata: " + overview.model_dump_json().encode() + b"\n\n"
