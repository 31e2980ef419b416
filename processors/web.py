"""Reads a company's homepage: bounded in size and time, redirects followed by hand so
every hop is checked, and unless allowed only public addresses (a job's domain must
not make the worker fetch internal services). Parses title, description and headings
with the standard library's html.parser. Research calls `fetch_homepage`.
"""

from __future__ import annotations

import ipaddress
import re
import socket
from dataclasses import asdict, dataclass, field
from html.parser import HTMLParser
from typing import Any

import aiohttp
from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.resolver import DefaultResolver
from yarl import URL

from processors.fetch import USER_AGENT, client_session, read_bounded

MAX_REDIRECTS = 5
REDIRECTS = frozenset({301, 302, 303, 307, 308})
HTML_TYPES = frozenset({"text/html", "application/xhtml+xml"})
MAX_HEADINGS = 20
MAX_TEXT = 300  # characters kept of a title, description or heading
_META_CHARSET = re.compile(rb"""<meta[^>]+charset=["']?([A-Za-z0-9_-]+)""", re.IGNORECASE)


class Unavailable(Exception):
    """The page could not be read; the message says why, for the research record."""


@dataclass(slots=True)
class Homepage:
    url: str
    final_url: str
    title: str | None = None
    description: str | None = None
    site_name: str | None = None
    headings: list[str] = field(default_factory=list)
    truncated: bool = False  # the page was larger than the size limit; its start was read

    def as_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["finalUrl"] = d.pop("final_url")
        d["siteName"] = d.pop("site_name")
        return d


async def fetch_homepage(url: str, *, timeout: float, max_bytes: int, allow_private: bool) -> Homepage:
    """Reads and parses `url`; raises Unavailable with the reason when it cannot."""
    connector = aiohttp.TCPConnector(resolver=None if allow_private else PublicResolver())
    async with client_session(connector=connector, headers={"User-Agent": USER_AGENT},
                                     timeout=aiohttp.ClientTimeout(total=timeout)) as session:
        try:
            body, truncated, final, charset = await _get(session, URL(url), max_bytes, allow_private)
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            raise Unavailable(_describe(exc, timeout)) from None
    page = Homepage(url, str(final), truncated=truncated)
    parser = _PageParser()
    parser.feed(_decode(body, charset))
    parser.close()
    page.title = _clip(parser.title or parser.meta.get("og:title"))
    page.description = _clip(parser.meta.get("description") or parser.meta.get("og:description"))
    page.site_name = _clip(parser.meta.get("og:site_name"))
    page.headings = [h for h in (_clip(h) for h in parser.headings) if h][:MAX_HEADINGS]
    return page


async def _get(session: aiohttp.ClientSession, url: URL, max_bytes: int,
               allow_private: bool) -> tuple[bytes, bool, URL, str | None]:
    for _ in range(MAX_REDIRECTS + 1):
        _check_target(url, allow_private)
        async with session.get(url, allow_redirects=False) as response:
            if response.status in REDIRECTS and "Location" in response.headers:
                url = url.join(URL(response.headers["Location"]))
                continue
            if response.status >= 400:
                raise Unavailable(f"{url.host} answered HTTP {response.status}")
            if response.content_type not in HTML_TYPES:
                raise Unavailable(f"not an HTML page ({response.content_type or 'no content type'})")
            body, truncated = await read_bounded(response, max_bytes)
            return body, truncated, url, response.charset
    raise Unavailable(f"more than {MAX_REDIRECTS} redirects")


def _check_target(url: URL, allow_private: bool) -> None:
    if url.scheme not in ("http", "https") or not url.host:
        raise Unavailable(f"will not follow a redirect to {url.scheme or 'a relative'} URL")
    if allow_private:
        return
    try:
        address = ipaddress.ip_address(url.host)
    except ValueError:
        return  # a name: PublicResolver checks what it resolves to
    if not address.is_global:
        raise Unavailable(f"{url.host} is not a public address")


class PublicResolver(AbstractResolver):
    """Resolves names like aiohttp's default, keeping only globally routable addresses
    (so DNS pointing at 127.0.0.1 or 10.x cannot reach internal services)."""

    def __init__(self) -> None:
        self._inner = DefaultResolver()

    async def resolve(self, host: str, port: int = 0,
                      family: socket.AddressFamily = socket.AF_INET) -> list[ResolveResult]:
        results = await self._inner.resolve(host, port, family)
        public = [r for r in results if ipaddress.ip_address(r["host"]).is_global]
        if not public:
            raise OSError(f"{host} resolves to no public address")
        return public

    async def close(self) -> None:
        await self._inner.close()


def _describe(exc: BaseException, timeout: float) -> str:
    if isinstance(exc, TimeoutError):
        return f"no answer within {timeout:g}s"
    return f"{type(exc).__name__}: {exc}"


def _decode(body: bytes, charset: str | None) -> str:
    if charset is None:
        found = _META_CHARSET.search(body[:4096])
        charset = found.group(1).decode() if found else "utf-8"
    try:
        return body.decode(charset, errors="replace")
    except LookupError:  # a charset Python does not know
        return body.decode("utf-8", errors="replace")


def _clip(text: str | None) -> str | None:
    if not text:
        return None
    text = " ".join(text.split())
    return text[:MAX_TEXT] or None


class _PageParser(HTMLParser):
    """Collects <title>, <meta name/property=... content=...> and h1/h2 texts."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.title: str | None = None
        self.meta: dict[str, str] = {}
        self.headings: list[str] = []
        self._in: str | None = None  # "title", "h1" or "h2" while inside one
        self._text: list[str] = []
        self._skip = 0  # depth inside <script>/<style>

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in ("script", "style"):
            self._skip += 1
        elif tag == "meta":
            a = dict(attrs)
            name = (a.get("name") or a.get("property") or "").strip().lower()
            if name and a.get("content") and name not in self.meta:
                self.meta[name] = a["content"] or ""
        elif tag in ("title", "h1", "h2") and self._in is None:
            self._in, self._text = tag, []

    def handle_endtag(self, tag: str) -> None:
        if tag in ("script", "style"):
            self._skip = max(self._skip - 1, 0)
        elif tag == self._in:
            text = " ".join("".join(self._text).split())
            if tag == "title":
                self.title = self.title or text
            elif text:
                self.headings.append(text)
            self._in = None

    def handle_data(self, data: str) -> None:
        if self._in is not None and not self._skip:
            self._text.append(data)


def html_to_text(html: str) -> str:
    """The text of an HTML fragment (feed summaries), whitespace collapsed."""
    parser = _TextParser()
    parser.feed(html)
    parser.close()
    return " ".join("".join(parser.parts).split())


class _TextParser(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self._skip = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in ("script", "style"):
            self._skip += 1
        elif tag in ("p", "br", "div", "li"):
            self.parts.append(" ")

    def handle_endtag(self, tag: str) -> None:
        if tag in ("script", "style"):
            self._skip = max(self._skip - 1, 0)

    def handle_data(self, data: str) -> None:
        if not self._skip:
            self.parts.append(data)
