"""Serving the app: where to bind (loopback only when no token is configured, unless
API_ALLOW_OPEN), the start-up log line, and a graceful stop on SIGTERM or SIGINT
(the listener closes, requests in flight get `shutdown_grace` to finish).

Used by `tgjobs api` alone and by `tgjobs up` beside the workers.
"""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from ipaddress import ip_address

from aiohttp import web

from api.app import create_app
from config import Settings

log = logging.getLogger(__name__)
LOOPBACK = "127.0.0.1"


class ServeError(Exception):
    """The API cannot listen where it was told to (address in use, not permitted...)."""


def bind_host(settings: Settings, host: str) -> str:
    """`host`, unless the API is open (no token configured) and `host` is not loopback:
    then loopback, unless API_ALLOW_OPEN says open to the network is meant."""
    if not settings.api_open or settings.api_allow_open or _is_loopback(host):
        return host
    log.warning("no API token is configured, so the API is open: binding %s instead of %s "
                "(configure API_TOKENS or API_TOKENS_FILE, or set API_ALLOW_OPEN=1)", LOOPBACK, host)
    return LOOPBACK


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ip_address(host).is_loopback
    except ValueError:
        return False


@asynccontextmanager
async def running_api(settings: Settings, host: str | None = None, port: int | None = None) -> AsyncIterator[str]:
    """Serves the API while the context is open; yields its base URL."""
    host = bind_host(settings, host or settings.api_host)
    port = settings.api_port if port is None else port
    runner = web.AppRunner(create_app(settings), shutdown_timeout=settings.shutdown_grace)
    await runner.setup()
    try:
        try:
            await web.TCPSite(runner, host, port).start()
        except OSError as exc:
            raise ServeError(f"cannot serve the HTTP API on {host}:{port}: {exc.strerror or exc}") from None
        url = f"http://{host}:{port}"
        if settings.api_open:
            log.warning("HTTP API on %s, OPEN: no token is configured, every caller may do everything", url)
        else:
            log.info("HTTP API on %s (bearer tokens required)", url)
        yield url
    finally:
        await runner.cleanup()


async def serve(settings: Settings, host: str | None = None, port: int | None = None) -> None:
    """Runs the API until SIGTERM or SIGINT."""
    async with running_api(settings, host, port):
        await stop_signal()
    log.info("HTTP API stopped")


async def stop_signal() -> None:
    """Returns at the first SIGTERM or SIGINT."""
    loop = asyncio.get_running_loop()
    stopped = asyncio.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stopped.set)
    try:
        await stopped.wait()
    finally:
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(signum)
