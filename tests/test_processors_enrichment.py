"""The enrichment processor: e-mail checks against a local DNS server (MX, null MX, no
domain, unreachable DNS), LinkedIn canonicalisation, the people-data provider's fields
merged without losing known ones, and engine retries on the provider's 429 and 5xx."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import redis.asyncio as aioredis
from fake_services import FakeDns, FakeHttp, dns_server, fake_http, unreachable_resolver  # noqa: F401
from processor_support import drain, jobs, make_ctx

from config import Settings
from processors.emailcheck import check_email
from processors.enrichment import EnrichmentProcessor, canonical_linkedin
from processors.store import Store
from streams import Producer, QueueAdmin

PERSON = {"title": "VP Logistics", "company": {"name": "Acme Corp"}, "skills": ["Supply chain", "SAP", "SAP"]}
DATA = {"contactId": "c_1", "companyId": "comp_1", "email": "Jane.Doe@ACME-CORP.com",
        "linkedinUrl": "https://uk.linkedin.com/in/Jane-Doe/?trk=abc"}


def people_settings(make_settings: Callable[..., Settings], fake: FakeHttp, **more: object) -> Settings:
    return make_settings(people_api_url=fake.people_url, people_api_key="pk-test", mx_lookup_timeout=0.3, **more)


async def test_contact_is_enriched_and_stored(engine_redis: aioredis.Redis, fake_http: FakeHttp,
                                              dns_server: FakeDns, make_settings: Callable[..., Settings]) -> None:
    fake_http.person = PERSON
    settings = people_settings(make_settings, fake_http)
    store = Store(engine_redis, settings)
    await store.save_profile("comp_1", domain="acme-corp.com")
    processor = EnrichmentProcessor(settings, engine_redis, resolver=dns_server.resolver())
    ctx = make_ctx(engine_redis, settings, "enrichment", DATA)

    record = await processor.handle(ctx)

    assert record == await store.contact("c_1")
    assert record["email"] == "Jane.Doe@acme-corp.com"
    assert record["emailStatus"] == "deliverable"
    assert record["emailMx"] == ["mx1.acme-corp.com", "mx2.acme-corp.com"]
    assert (record["emailRole"], record["emailFreeMail"], record["emailMatchesCompany"]) == (False, False, True)
    assert record["linkedinUrl"] == "https://www.linkedin.com/in/jane-doe"
    assert record["linkedinSlug"] == "jane-doe"
    assert (record["title"], record["company"], record["skills"]) == ("VP Logistics", "Acme Corp", ["Supply chain", "SAP"])
    assert record["sources"]["title"]["source"] == "people-api"
    assert record["sources"]["emailStatus"]["source"] == "email-check"
    assert record["sources"]["title"]["jobId"] == ctx.id
    assert record["unavailable"] == {}
    (request,) = fake_http.people_requests
    assert request["authorization"] == "Bearer pk-test"
    assert request["query"] == {"email": "Jane.Doe@acme-corp.com", "linkedinUrl": DATA["linkedinUrl"]}
    assert [c["contactId"] for c in await store.company_contacts("comp_1")] == ["c_1"]


async def test_known_fields_survive_an_emptier_run(engine_redis: aioredis.Redis, fake_http: FakeHttp,
                                                   dns_server: FakeDns, make_settings: Callable[..., Settings]) -> None:
    fake_http.person = PERSON
    settings = people_settings(make_settings, fake_http)
    first = await EnrichmentProcessor(settings, engine_redis, resolver=dns_server.resolver()).handle(
        make_ctx(engine_redis, settings, "enrichment", DATA))

    # Second run: the provider has no match (404) and DNS is unreachable.
    fake_http.people_statuses = [404]
    second = await EnrichmentProcessor(settings, engine_redis, resolver=unreachable_resolver()).handle(
        make_ctx(engine_redis, settings, "enrichment", {"contactId": "c_1", "companyId": "comp_1",
                                                        "email": DATA["email"]}))
    for name in ("title", "company", "skills", "emailStatus", "emailMx", "linkedinUrl"):
        assert second[name] == first[name], name
        assert second["sources"][name] == first["sources"][name], name
    assert second["unavailable"] == {}  # every field it could not get is still known

    # A new address replaces the e-mail fields as a group, "unknown" included.
    third = await EnrichmentProcessor(settings, engine_redis, resolver=unreachable_resolver()).handle(
        make_ctx(engine_redis, settings, "enrichment", {"contactId": "c_1", "companyId": "comp_1",
                                                        "email": "jane@gmail.com"}))
    assert (third["email"], third["emailStatus"], third["emailFreeMail"]) == ("jane@gmail.com", "unknown", True)
    assert third["emailMx"] == [] and third["title"] == "VP Logistics"


async def test_without_a_provider_fields_are_marked_unavailable(
        engine_redis: aioredis.Redis, dns_server: FakeDns, make_settings: Callable[..., Settings]) -> None:
    settings = make_settings()
    record = await EnrichmentProcessor(settings, engine_redis, resolver=dns_server.resolver()).handle(
        make_ctx(engine_redis, settings, "enrichment", {**DATA, "linkedinUrl": "https://linkedin.com/company/acme"}))
    assert record["emailStatus"] == "deliverable" and record["emailMatchesCompany"] is None  # domain unknown
    assert "title" not in record and "linkedinUrl" not in record
    assert set(record["unavailable"]) == {"title", "company", "skills", "linkedin"}
    assert "PEOPLE_API_URL" in record["unavailable"]["title"]
    assert "not a profile URL" in record["unavailable"]["linkedin"]


@pytest.mark.parametrize(("address", "status", "reason"), [
    ("sales@acme-corp.com", "deliverable", "MX records"),
    ("x@nomail-corp.com", "undeliverable", "null MX"),
    ("x@aonly-corp.com", "deliverable", "A record"),
    ("x@no-such-corp.com", "undeliverable", "does not exist"),
])
async def test_mx_deliverability(dns_server: FakeDns, address: str, status: str, reason: str) -> None:
    check = await check_email(address, "acme-corp.com", timeout=2, resolver=dns_server.resolver())
    assert check.status == status and reason in check.reason
    assert check.role is address.startswith("sales@")


async def test_unreachable_dns_is_unknown_not_invalid() -> None:
    check = await check_email("jane@acme-corp.com", None, timeout=0.3, resolver=unreachable_resolver())
    assert check.status == "unknown" and check.reason.startswith("DNS unavailable")
    assert (await check_email("jane@acme-corp.com", None, timeout=0.3, resolver=None)).status == "unknown"


@pytest.mark.parametrize(("url", "expected"), [
    ("https://www.linkedin.com/in/john-doe", "john-doe"),
    ("http://linkedin.com/in/John-Doe/", "john-doe"),
    ("https://de.linkedin.com/in/j%C3%BCrgen-m%C3%BCller-123/details/experience/?x=1", "jürgen-müller-123"),
])
def test_linkedin_urls_are_canonicalised(url: str, expected: str) -> None:
    canonical, slug = canonical_linkedin(url)
    assert slug == expected
    assert canonical.startswith("https://www.linkedin.com/in/") and "?" not in canonical


@pytest.mark.parametrize("url", ["https://linkedin.evil.com/in/x", "https://www.linkedin.com/company/acme",
                                 "https://www.linkedin.com/in/", "https://example.com/in/john"])
def test_non_profile_urls_are_rejected(url: str) -> None:
    with pytest.raises(ValueError):
        canonical_linkedin(url)


async def test_provider_429_and_5xx_are_retried_by_the_engine(
        engine_redis: aioredis.Redis, fake_http: FakeHttp, dns_server: FakeDns,
        make_settings: Callable[..., Settings]) -> None:
    fake_http.person = PERSON
    fake_http.people_statuses = [429, 500]
    settings = people_settings(make_settings, fake_http,
                               enrichment={"attempts": 3, "backoff_delay": 0.05, "rate_limit": "none"})
    job = await Producer(engine_redis, settings).add("enrichment", DATA)
    await drain(settings, "enrichment", EnrichmentProcessor(settings, engine_redis, resolver=dns_server.resolver()).handle)

    (done,) = await jobs(engine_redis, settings, "enrichment")
    assert done.id == job.id and done.state == "completed" and done.attemptsMade == 3
    assert done.returnvalue["title"] == "VP Logistics"
    assert len(fake_http.people_requests) == 3


async def test_provider_refusal_is_dead_lettered_at_once(
        engine_redis: aioredis.Redis, fake_http: FakeHttp, dns_server: FakeDns,
        make_settings: Callable[..., Settings]) -> None:
    fake_http.people_statuses = [401]
    settings = people_settings(make_settings, fake_http,
                               enrichment={"attempts": 3, "backoff_delay": 0.05, "rate_limit": "none"})
    await Producer(engine_redis, settings).add("enrichment", DATA)
    await drain(settings, "enrichment", EnrichmentProcessor(settings, engine_redis, resolver=dns_server.resolver()).handle)

    (dead,) = await QueueAdmin(engine_redis, settings).dead_letters("enrichment")
    assert dead.attempts == 1 and "HTTP 401" in dead.error
    assert len(fake_http.people_requests) == 1
