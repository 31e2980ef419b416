"""Real local servers standing in for the processors' outside services, each on a free
loopback port: one aiohttp app (OpenAI-style chat completions, an RSS feed, a company
homepage, a people-data API), an aiosmtpd SMTP server, and a DNS server for MX lookups.
Tests script their answers and read what they received. Import the fixtures by name.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from email import message_from_bytes, policy
from email.message import EmailMessage
from typing import Any

import dns.asyncresolver
import dns.message
import dns.rcode
import dns.rdatatype
import dns.rrset
import orjson
import pytest
from aiohttp import web
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session



def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# -- HTTP: LLM, feed, homepage, people data ------------------------------------------------

@dataclass
class FakeHttp:
    url: str = ""
    llm_answers: list[str | int] = field(default_factory=list)  # content to answer, or an HTTP status
    llm_requests: list[dict[str, Any]] = field(default_factory=list)
    people_statuses: list[int] = field(default_factory=list)  # answered first, one per request; then 200
    person: dict[str, Any] = field(default_factory=dict)
    people_requests: list[dict[str, Any]] = field(default_factory=list)
    feed_items: list[dict[str, str]] = field(default_factory=list)
    feed_requests: list[str] = field(default_factory=list)
    homepage: str = ""
    homepage_headers: list[dict[str, str]] = field(default_factory=list)

    @property
    def llm_url(self) -> str:
        return f"{self.url}/v1"

    @property
    def people_url(self) -> str:
        return f"{self.url}/people"

    @property
    def homepage_url(self) -> str:
        return f"{self.url}/sites/{{domain}}/"

    def feed_url(self, query: str = "{company}") -> str:
        return f"{self.url}/feed.xml?q={query}"

    async def _chat(self, request: web.Request) -> web.Response:
        body = await request.json()
        self.llm_requests.append({"body": body, "authorization": request.headers.get("Authorization")})
        answer = self.llm_answers.pop(0) if self.llm_answers else 500
        if isinstance(answer, int):
            return web.json_response({"error": {"message": "scripted failure"}}, status=answer)
        return web.json_response({
            "id": "chatcmpl-test", "object": "chat.completion", "model": body["model"],
            "choices": [{"index": 0, "finish_reason": "stop",
                         "message": {"role": "assistant", "content": answer}}],
        })

    async def _people(self, request: web.Request) -> web.Response:
        self.people_requests.append({"query": dict(request.query),
                                     "authorization": request.headers.get("Authorization")})
        status = self.people_statuses.pop(0) if self.people_statuses else 200
        if status != 200:
            return web.json_response({"error": "scripted"}, status=status)
        return web.json_response(self.person)

    async def _feed(self, request: web.Request) -> web.Response:
        self.feed_requests.append(request.rel_url.raw_query_string)
        items = "".join(
            f"<item><title>{i['title']}</title><link>{i['link']}</link>"
            f"<description>{i.get('description', '')}</description><pubDate>{i['date']}</pubDate></item>"
            for i in self.feed_items)
        rss = (f'<?xml version="1.0"?><rss version="2.0"><channel><title>Test News</title>'
               f"<link>{self.url}</link><description>test</description>{items}</channel></rss>")
        return web.Response(text=rss, content_type="application/rss+xml")

    async def _site(self, request: web.Request) -> web.Response:
        self.homepage_headers.append(dict(request.headers))
        if not self.homepage:
            return web.Response(status=404)
        return web.Response(text=self.homepage, content_type="text/html")

    def app(self) -> web.Application:
        app = web.Application()
        app.add_routes([web.post("/v1/chat/completions", self._chat), web.get("/people", self._people),
                        web.get("/feed.xml", self._feed), web.get("/sites/{domain}/", self._site)])
        return app


@pytest.fixture
async def fake_http() -> AsyncIterator[FakeHttp]:
    fake = FakeHttp()
    runner = web.AppRunner(fake.app())
    await runner.setup()
    port = free_port()
    site = web.TCPSite(runner, "127.0.0.1", port)
    await site.start()
    fake.url = f"http://127.0.0.1:{port}"
    try:
        yield fake
    finally:
        await runner.cleanup()


def llm_json(**fields: Any) -> str:
    return orjson.dumps(fields).decode()


# -- SMTP ------------------------------------------------------------------------------------

@dataclass
class FakeSmtp:
    host: str
    port: int
    messages: list[tuple[Envelope, EmailMessage]] = field(default_factory=list)
    fail_next: int = 0  # answer this many DATA commands with a temporary failure
    logins: list[tuple[bytes, bytes]] = field(default_factory=list)

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        if self.fail_next:
            self.fail_next -= 1
            return "451 4.3.0 scripted temporary failure"
        assert isinstance(envelope.content, bytes)
        self.messages.append((envelope, message_from_bytes(envelope.content, policy=policy.default)))
        return "250 OK"


class _Authenticator:
    def __init__(self, fake: FakeSmtp) -> None:
        self.fake = fake

    def __call__(self, server: SMTP, session: Session, envelope: Envelope, mechanism: str,
                 auth_data: Any) -> Any:
        from aiosmtpd.smtp import AuthResult

        self.fake.logins.append((auth_data.login, auth_data.password))
        return AuthResult(success=auth_data.password == b"secret")


@pytest.fixture
def smtp_server() -> Iterator[FakeSmtp]:
    fake = FakeSmtp("127.0.0.1", free_port())
    controller = Controller(fake, hostname=fake.host, port=fake.port, authenticator=_Authenticator(fake),
                            auth_require_tls=False)
    controller.start()
    try:
        yield fake
    finally:
        controller.stop()


# -- DNS -------------------------------------------------------------------------------------

class _DnsProtocol(asyncio.DatagramProtocol):
    def __init__(self, zone: dict[tuple[str, str], list[str]]) -> None:
        self.zone = zone
        self.transport: Any = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        query = dns.message.from_wire(data)
        response = dns.message.make_response(query)
        question = query.question[0]
        name = question.name.to_text(omit_final_dot=True).lower()
        rdtype = dns.rdatatype.to_text(question.rdtype)
        records = self.zone.get((name, rdtype))
        if records:
            response.answer.append(dns.rrset.from_text_list(question.name, 300, "IN", rdtype, records))
        elif not any(known == name for known, _ in self.zone):
            response.set_rcode(dns.rcode.NXDOMAIN)
        self.transport.sendto(response.to_wire(), addr)


@dataclass
class FakeDns:
    zone: dict[tuple[str, str], list[str]]
    port: int

    def resolver(self) -> dns.asyncresolver.Resolver:
        resolver = dns.asyncresolver.Resolver(configure=False)
        resolver.nameservers = ["127.0.0.1"]
        resolver.port = self.port
        return resolver


@pytest.fixture
async def dns_server() -> AsyncIterator[FakeDns]:
    """Answers for a few domains: MX, null MX, A only; any other name is NXDOMAIN."""
    zone = {
        ("acme-corp.com", "MX"): ["10 mx1.acme-corp.com.", "20 mx2.acme-corp.com."],
        ("gmail.com", "MX"): ["5 gmail-smtp-in.l.google.com."],
        ("nomail-corp.com", "MX"): ["0 ."],
        ("aonly-corp.com", "A"): ["192.0.2.10"],
    }
    loop = asyncio.get_running_loop()
    port = free_port()
    transport, _ = await loop.create_datagram_endpoint(lambda: _DnsProtocol(zone), local_addr=("127.0.0.1", port))
    try:
        yield FakeDns(zone, port)
    finally:
        transport.close()


def unreachable_resolver() -> dns.asyncresolver.Resolver:
    """A resolver pointed at a port where nothing answers."""
    resolver = dns.asyncresolver.Resolver(configure=False)
    resolver.nameservers = ["127.0.0.1"]
    resolver.port = free_port()
    return resolver
