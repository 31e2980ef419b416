"""News about a company from the configured RSS/Atom feeds, parsed with feedparser.
A feed URL with a {company} or {domain} placeholder is a search feed: its items are
taken as about the company. Any other feed is general: only items naming the company
or its domain are kept. Feeds are read through the guarded client (processors.outbound):
a feed whose host is {domain} and every redirect are checked; a feed's URL is recorded
without its query. Research calls `gather_news`; a feed that fails is reported.
"""

from __future__ import annotations

import asyncio
import calendar
import re
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote_plus

import feedparser

from processors.outbound import FetchFailed, OutboundHttp, host_from_data, shown_url
from processors.periods import iso_instant
from processors.web import html_to_text

MAX_SUMMARY = 500
MAX_TITLE = 300


@dataclass(slots=True)
class NewsItem:
    title: str
    link: str | None
    published: str | None  # ISO instant, when the feed gives one
    summary: str
    source: str  # the feed's title, else its URL

    def as_dict(self) -> dict[str, Any]:
        return {"title": self.title, "link": self.link, "published": self.published,
                "summary": self.summary, "source": self.source}


@dataclass(slots=True)
class FeedOutcome:
    url: str
    items: int = 0
    error: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {"type": "feed", "url": self.url, "status": "unavailable" if self.error else "ok",
                "items": self.items, **({"reason": self.error} if self.error else {})}


async def gather_news(http: OutboundHttp, templates: tuple[str, ...], company: str, domain: str | None, *,
                      max_bytes: int, max_items: int) -> tuple[list[NewsItem], list[FeedOutcome]]:
    """Items from every feed, newest first, without repeats, at most `max_items`."""
    runs = [_read_feed(http, template, company, domain, max_bytes) for template in templates]
    answers = await asyncio.gather(*runs)
    items: list[NewsItem] = []
    outcomes = []
    seen: set[str] = set()
    for found, outcome in answers:
        outcomes.append(outcome)
        for item in found:
            identity = item.link or item.title.lower()
            if identity not in seen:
                seen.add(identity)
                items.append(item)
    # Undated items sort last; ISO instants in UTC sort as text.
    items.sort(key=lambda i: i.published or "", reverse=True)
    return items[:max_items], outcomes


async def _read_feed(http: OutboundHttp, template: str, company: str, domain: str | None,
                     max_bytes: int) -> tuple[list[NewsItem], FeedOutcome]:
    if "{domain}" in template and not domain:
        return [], FeedOutcome(shown_url(template), error="the feed needs the company's domain, which is unknown")
    url = template.replace("{company}", quote_plus(company)).replace("{domain}", quote_plus(domain or ""))
    outcome = FeedOutcome(shown_url(url))
    try:
        fetched = await http.get(url, max_bytes=max_bytes, trusted_first_hop=not host_from_data(template))
    except FetchFailed as exc:
        outcome.error = str(exc)
        return [], outcome
    content_type = fetched.content_type + (f"; charset={fetched.charset}" if fetched.charset else "")
    body = fetched.body
    # feedparser is synchronous and can take a while on a large feed: off the event loop.
    parsed = await asyncio.to_thread(feedparser.parse, body, response_headers={"content-type": content_type})
    if not parsed.entries and parsed.bozo:
        outcome.error = f"not a feed: {parsed.get('bozo_exception')}"
        return [], outcome
    source = _clean(parsed.feed.get("title"), MAX_TITLE) or outcome.url
    about_company = "{company}" in template or "{domain}" in template
    mentions = _mention_pattern(company, domain)
    items = []
    for entry in parsed.entries:
        item = _item(entry, source)
        if item and (about_company or mentions.search(f"{item.title} {item.summary} {item.link or ''}")):
            items.append(item)
    outcome.items = len(items)
    return items, outcome


def _item(entry: Any, source: str) -> NewsItem | None:
    title = _clean(html_to_text(entry.get("title") or ""), MAX_TITLE)
    if not title:
        return None
    when = entry.get("published_parsed") or entry.get("updated_parsed")
    published = iso_instant(calendar.timegm(when) * 1000) if when else None
    summary = _clean(html_to_text(entry.get("summary") or ""), MAX_SUMMARY) or ""
    return NewsItem(title, entry.get("link"), published, summary, source)


def _mention_pattern(company: str, domain: str | None) -> re.Pattern[str]:
    names = [re.escape(company)] + ([re.escape(domain)] if domain else [])
    return re.compile(r"(?<!\w)(" + "|".join(names) + r")(?!\w)", re.IGNORECASE)


def _clean(text: str | None, limit: int) -> str | None:
    if not text:
        return None
    return " ".join(text.split())[:limit] or None
