"""The one HTTP client for fetches whose target comes from job data or from a redirect
(company homepages, news feeds). Research opens one per job.

The check sits where the socket is made: aiohttp hands its socket factory the exact
address it is about to connect to (after resolving the name, for an IP literal and for
every redirect hop alike), and the factory refuses one that is not public
(processors.addresses). There is no second resolution between check and connect.

A configured URL whose host is the operator's own (no placeholder in it) is trusted for
its first hop; redirects are followed by hand and every hop after the first is checked.
`FETCH_ALLOW_PRIVATE=1` turns the check off (tests, or a deployment fetching from an
internal mirror). Refused and unreachable read the same ("<host> could not be reached"),
so an answer never tells an open port from a closed or forbidden one. `shown_url` is
what records and answers may show of a URL: no query (it may carry an API key), no
user info, no fragment.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from dataclasses import dataclass
from types import TracebackType
from urllib.parse import urlsplit, urlunsplit

import aiohttp
from aiohappyeyeballs import AddrInfoType
from yarl import URL

from processors.addresses import is_public_address
from processors.fetch import USER_AGENT, client_session, read_bounded

log = logging.getLogger(__name__)

MAX_REDIRECTS = 5
REDIRECTS = frozenset({301, 302, 303, 307, 308})


class FetchFailed(Exception):
    """The URL could not be read; the message says why and is safe for a record."""


class AddressRefused(OSError):
    """The connector was about to connect to an address that is not public."""


@dataclass(slots=True)
class Fetched:
    url: URL  # after redirects
    body: bytes
    truncated: bool  # the body was larger than asked for; its start was read
    content_type: str
    charset: str | None


def shown_url(url: str | URL) -> str:
    """The URL without its query, fragment and user info: safe to store and answer."""
    parts = urlsplit(str(url))
    return urlunsplit((parts.scheme, parts.netloc.rpartition("@")[2], parts.path, "", ""))


def host_from_data(template: str) -> bool:
    """True when a configured URL template takes its host from job data ({domain} in it)."""
    return "{" in urlsplit(template).netloc


def public_socket(addr_info: AddrInfoType) -> socket.socket:
    """aiohttp's socket factory: refuses to make a socket for a non-public address."""
    family, type_, proto, _, sockaddr = addr_info
    if not is_public_address(str(sockaddr[0])):
        log.warning("outbound fetch refused: %s is not a public address (FETCH_ALLOW_PRIVATE=1 allows it)",
                    sockaddr[0])
        raise AddressRefused(f"{sockaddr[0]} is not a public address")
    return socket.socket(family, type_, proto)


class OutboundHttp:
    """`async with OutboundHttp(allow_private=..., timeout=...) as http: await http.get(url)`."""

    def __init__(self, *, allow_private: bool, timeout: float) -> None:
        self.allow_private = allow_private
        self.timeout = timeout
        self._guarded: aiohttp.ClientSession | None = None
        self._trusted: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> OutboundHttp:
        self._guarded = self._session(None if self.allow_private else public_socket)
        self._trusted = self._guarded if self.allow_private else self._session(None)
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        for session in {self._guarded, self._trusted}:
            if session is not None:
                await session.close()

    def _session(self, socket_factory: object) -> aiohttp.ClientSession:
        connector = aiohttp.TCPConnector(socket_factory=socket_factory)  # type: ignore[arg-type]
        return client_session(connector=connector, headers={"User-Agent": USER_AGENT},
                              timeout=aiohttp.ClientTimeout(total=self.timeout))

    async def get(self, url: str, *, max_bytes: int, trusted_first_hop: bool = False) -> Fetched:
        """The body of `url` (redirects followed, each hop checked) when it answers below 400.
        `trusted_first_hop`: the URL is the operator's own, host included."""
        target = URL(url)
        try:
            async with asyncio.timeout(self.timeout):
                return await self._follow(target, max_bytes, trusted_first_hop)
        except TimeoutError:
            raise FetchFailed(f"{target.host} gave no answer within {self.timeout:g}s") from None
        except (aiohttp.ClientError, OSError):
            raise FetchFailed(f"{target.host} could not be reached") from None

    async def _follow(self, url: URL, max_bytes: int, trusted: bool) -> Fetched:
        assert self._guarded is not None and self._trusted is not None, "use OutboundHttp in `async with`"
        for hop in range(MAX_REDIRECTS + 1):
            if url.scheme not in ("http", "https") or not url.host:
                raise FetchFailed(f"will not follow a redirect to {url.scheme or 'a relative'} URL")
            session = self._trusted if trusted and hop == 0 else self._guarded
            try:
                async with session.get(url, allow_redirects=False) as response:
                    if response.status in REDIRECTS and "Location" in response.headers:
                        url = _redirect_target(url, response.headers["Location"])
                        continue
                    if response.status >= 400:
                        raise FetchFailed(f"{url.host} answered HTTP {response.status}")
                    body, truncated = await read_bounded(response, max_bytes)
                    return Fetched(url, body, truncated, response.content_type, response.charset)
            except (aiohttp.ClientError, OSError):
                raise FetchFailed(f"{url.host} could not be reached") from None
        raise FetchFailed(f"more than {MAX_REDIRECTS} redirects")


def _redirect_target(url: URL, location: str) -> URL:
    try:
        return url.join(URL(location))
    except ValueError:
        raise FetchFailed(f"{url.host} redirected to a URL that does not parse") from None
