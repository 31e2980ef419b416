"""Reads a company's homepage through the guarded client (processors.outbound: bounded
in size and time, every hop checked, only public addresses unless allowed) and parses
title, description and headings with the standard library's html.parser. Research calls
`fetch_homepage`.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field
from html.parser import HTMLParser
from typing import Any

from processors.outbound import FetchFailed, OutboundHttp, shown_url

HTML_TYPES = frozenset({"text/html", "application/xhtml+xml"})
MAX_HEADINGS = 20
MAX_TEXT = 300  # characters kept of a title, description or heading
_META_CHARSET = re.compile(rb"""<meta[^>]+charset=["']?([A-Za-z0-9_-]+)""", re.IGNORECASE)


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


async def fetch_homepage(http: OutboundHttp, url: str, *, max_bytes: int, trusted_host: bool) -> Homepage:
    """Reads and parses `url`; raises FetchFailed with the reason when it cannot.
    `trusted_host`: the URL's host is the operator's (HOMEPAGE_URL names {domain} elsewhere)."""
    fetched = await http.get(url, max_bytes=max_bytes, trusted_first_hop=trusted_host)
    if fetched.content_type not in HTML_TYPES:
        raise FetchFailed(f"not an HTML page ({fetched.content_type or 'no content type'})")
    page = Homepage(shown_url(url), shown_url(fetched.url), truncated=fetched.truncated)
    parser = _PageParser()
    parser.feed(_decode(fetched.body, fetched.charset))
    parser.close()
    page.title = _clip(parser.title or parser.meta.get("og:title"))
    page.description = _clip(parser.meta.get("description") or parser.meta.get("og:description"))
    page.site_name = _clip(parser.meta.get("og:site_name"))
    page.headings = [h for h in (_clip(h) for h in parser.headings) if h][:MAX_HEADINGS]
    return page


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
