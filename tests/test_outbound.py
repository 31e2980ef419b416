"""The guarded client of outbound fetches (issue 13, finding 1): which addresses count as
public, refusal at the socket for IP literals, names and redirect hops against real local
servers, one message for refused and unreachable, and research records that neither
carry what an internal server answered nor a configured feed's query string."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field

import pytest
import redis.asyncio as aioredis
from aiohttp import web
from fake_services import free_port
from processor_support import make_ctx

from config import Settings
from processors.addresses import is_public_address
from processors.outbound import FetchFailed, OutboundHttp, host_from_data, shown_url
from processors.research import ResearchProcessor
from processors.store import Store

SECRET_ITEM = "Internal admin panel exposed"
FEED = ('<?xml version="1.0"?><rss version="2.0"><channel><title>{title}</title><link>http://x.test</link>'
        "<description>d</description><item><title>{item}</title><link>http://x.test/1</link>"
        "<description>Acme Corp</description><pubDate>Mon, 15 Jan 2024 10:00:00 GMT</pubDate></item>"
        "</channel></rss>")


@pytest.mark.parametrize("address", [
    "127.0.0.1", "127.8.9.10", "10.0.0.1", "172.16.5.4", "192.168.1.1", "169.254.169.254", "100.64.0.1",
    "100.100.100.200", "0.0.0.0", "224.0.0.1", "239.255.255.250", "255.255.255.255", "240.0.0.1", "192.0.2.1",
    "::1", "::", "fe80::1", "fe80::1%eth0", "fc00::1", "fd00:ec2::254", "ff02::1", "ff0e::1",
    "::ffff:127.0.0.1", "::ffff:10.1.2.3", "::ffff:169.254.169.254", "::127.0.0.1", "2002:7f00:1::1",
    "2002:a00:1::", "64:ff9b::a00:1", "64:ff9b::7f00:1", "not-an-address", "",
])
def test_non_public_addresses_are_refused(address: str) -> None:
    assert not is_public_address(address)


@pytest.mark.parametrize("address", ["8.8.8.8", "1.1.1.1", "2606:4700:4700::1111", "::ffff:8.8.8.8",
                                     "64:ff9b::808:808", "2002:808:808::1"])
def test_public_addresses_are_allowed(address: str) -> None:
    assert is_public_address(address)


def test_shown_url_drops_query_and_credentials() -> None:
    assert shown_url("https://user:pw@news.test:8443/feed.xml?q=Acme&key=SECRET#top") == "https://news.test:8443/feed.xml"
    assert host_from_data("https://{domain}/") and host_from_data("http://{domain}.test:81/x")
    assert not host_from_data("http://127.0.0.1:81/sites/{domain}/?q={company}")


@dataclass
class Site:
    """A local HTTP server: /feed.xml answers a feed, /to?url=... redirects, and every
    request's path is recorded."""

    title: str
    item: str
    port: int = 0
    requests: list[str] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def handle(self, request: web.Request) -> web.StreamResponse:
        self.requests.append(request.path_qs)
        if request.path == "/to":
            raise web.HTTPFound(request.query["url"])
        if request.path == "/page":
            return web.Response(text=f"<html><title>{self.title}</title></html>", content_type="text/html")
        return web.Response(text=FEED.format(title=self.title, item=self.item), content_type="application/rss+xml")


@pytest.fixture
async def sites() -> AsyncIterator[Callable[[str, str], Site]]:
    runners: list[web.AppRunner] = []

    async def start(title: str, item: str) -> Site:
        site = Site(title, item, free_port())
        app = web.Application()
        app.router.add_route("GET", "/{tail:.*}", site.handle)
        runner = web.AppRunner(app)
        await runner.setup()
        runners.append(runner)
        await web.TCPSite(runner, "127.0.0.1", site.port).start()
        return site

    yield start  # type: ignore[misc]
    for runner in runners:
        await runner.cleanup()


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost", "[::ffff:127.0.0.1]", "127.1"])
async def test_targets_from_job_data_are_refused_at_the_socket(sites: Callable[..., object], host: str) -> None:
    internal: Site = await sites("Internal", SECRET_ITEM)  # type: ignore[misc]
    async with OutboundHttp(allow_private=False, timeout=5) as http:
        with pytest.raises(FetchFailed) as refused:
            await http.get(f"http://{host}:{internal.port}/feed.xml", max_bytes=10_000)
    assert str(refused.value).endswith(" could not be reached")
    assert internal.requests == []


async def test_redirects_of_a_trusted_url_are_checked_on_every_hop(sites: Callable[..., object]) -> None:
    configured: Site = await sites("Configured", "Acme Corp news")  # type: ignore[misc]
    internal: Site = await sites("Internal", SECRET_ITEM)  # type: ignore[misc]
    async with OutboundHttp(allow_private=False, timeout=5) as http:
        page = await http.get(f"{configured.url}/feed.xml", max_bytes=10_000, trusted_first_hop=True)
        assert b"Acme Corp news" in page.body
        for target in (f"{internal.url}/feed.xml", f"http://localhost:{internal.port}/feed.xml",
                       f"{configured.url}/to?url={internal.url}/feed.xml"):  # two hops, the second internal
            with pytest.raises(FetchFailed, match="could not be reached"):
                await http.get(f"{configured.url}/to?url={target}", max_bytes=10_000, trusted_first_hop=True)
        with pytest.raises(FetchFailed, match="will not follow a redirect to file URL"):
            await http.get(f"{configured.url}/to?url=file:///etc/passwd", max_bytes=10_000, trusted_first_hop=True)
    assert internal.requests == []


async def test_refused_and_closed_port_read_the_same(sites: Callable[..., object]) -> None:
    internal: Site = await sites("Internal", SECRET_ITEM)  # type: ignore[misc]
    closed = free_port()
    async with OutboundHttp(allow_private=False, timeout=5) as guarded:
        with pytest.raises(FetchFailed) as refused:
            await guarded.get(f"{internal.url}/feed.xml", max_bytes=10_000)
    async with OutboundHttp(allow_private=True, timeout=5) as open_http:
        with pytest.raises(FetchFailed) as unreachable:
            await open_http.get(f"http://127.0.0.1:{closed}/feed.xml", max_bytes=10_000)
        assert b"Internal" in (await open_http.get(f"{internal.url}/feed.xml", max_bytes=10_000)).body
    assert str(refused.value) == str(unreachable.value) == "127.0.0.1 could not be reached"


async def test_research_records_nothing_an_internal_address_answers(
        engine_redis: aioredis.Redis, sites: Callable[..., object], make_settings: Callable[..., Settings]) -> None:
    """The seam of the old code: a configured feed and homepage redirecting to 127.0.0.1 were
    followed, the internal answer landed in the record, and the feed's key was recorded."""
    configured: Site = await sites("Configured", "Acme Corp news")  # type: ignore[misc]
    internal: Site = await sites("Internal", SECRET_ITEM)  # type: ignore[misc]
    settings = make_settings(
        news_feed_urls=[f"{configured.url}/feed.xml?key=SECRET-KEY&q={{company}}",
                        f"{configured.url}/to?url={internal.url}/feed.xml&key=SECRET-KEY"],
        homepage_url=f"{configured.url}/to?url={internal.url}/page&d={{domain}}")
    data = {"companyId": "comp_1", "companyName": "Acme Corp", "domain": "acme-corp.com"}
    result = await ResearchProcessor(settings, engine_redis).handle(make_ctx(engine_redis, settings, "research", data))

    record = await Store(engine_redis, settings).research(result["researchId"])
    assert record is not None
    text = str(record)
    assert SECRET_ITEM not in text and "Internal" not in text and internal.requests == []
    assert "SECRET-KEY" not in text
    assert [item["title"] for item in record["news"]] == ["Acme Corp news"]
    feeds = [s for s in record["sources"] if s["type"] == "feed"]
    assert feeds[1] == {"type": "feed", "url": f"{configured.url}/to", "status": "unavailable", "items": 0,
                        "reason": "127.0.0.1 could not be reached"}
    assert record["unavailable"]["website"] == "127.0.0.1 could not be reached"
