"""The enrichment processor: checks the contact's e-mail (syntax, MX deliverability,
role and free-mail flags, company domain), canonicalises the LinkedIn profile URL, and
merges in the people-data provider's title, company and skills when one is configured.
A known field is never overwritten by an empty one; each field records its source and
time. Stores and returns the contact record. Registered for the `enrichment` queue.
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import quote, unquote, urlsplit

import dns.asyncresolver
from redis.asyncio import Redis

from config import Settings
from processors.emailcheck import check_email, system_resolver
from processors.models import EnrichmentData, parse_job_data
from processors.people import PeopleApi, Person
from processors.periods import iso_instant, now_ms
from processors.store import Store
from streams import JobContext

EMAIL_FIELDS = ("email", "emailStatus", "emailReason", "emailMx", "emailRole", "emailFreeMail",
                "emailMatchesCompany")
PROVIDER_FIELDS = ("title", "company", "skills")
_SLUG = re.compile(r"[\w\-.%]{3,100}")


class EnrichmentProcessor:
    def __init__(self, settings: Settings, redis: Redis, *,
                 resolver: dns.asyncresolver.Resolver | None = None, people: PeopleApi | None = None) -> None:
        self.settings = settings
        self.store = Store(redis, settings)
        self.resolver = resolver
        self._resolver_ready = resolver is not None
        self.people = people or (PeopleApi(settings) if settings.people_api_configured else None)

    async def handle(self, ctx: JobContext) -> dict[str, Any]:
        job = parse_job_data(EnrichmentData, ctx.data)
        found: dict[str, tuple[Any, str]] = {}  # field -> (value, source)
        unavailable: dict[str, str] = {}

        await ctx.progress(10)
        if job.email is not None:
            profile = await self.store.profile(job.companyId)
            check = await check_email(job.email, profile.get("domain"), timeout=self.settings.mx_lookup_timeout,
                                      resolver=self._dns())
            found.update({name: (value, "email-check") for name, value in check.fields().items()})

        await ctx.progress(40)
        linkedin = str(job.linkedinUrl) if job.linkedinUrl is not None else None
        if linkedin is not None:
            try:
                url, slug = canonical_linkedin(linkedin)
                found.update({"linkedinUrl": (url, "input"), "linkedinSlug": (slug, "input")})
            except ValueError as exc:
                unavailable["linkedin"] = f"{linkedin}: {exc}"

        await ctx.progress(60)
        if self.people is None:
            for name in PROVIDER_FIELDS:
                unavailable[name] = "no people-data provider configured (PEOPLE_API_URL)"
        elif job.email is None and linkedin is None:
            for name in PROVIDER_FIELDS:
                unavailable[name] = "neither e-mail nor LinkedIn URL given to look the contact up by"
        else:
            # ProviderUnavailable (429, 5xx, unreachable) propagates: the engine retries the job.
            person = await self.people.lookup(email=job.email, linkedin_url=linkedin)
            if person is None:
                for name in PROVIDER_FIELDS:
                    unavailable[name] = "the people-data provider has no match"
            else:
                found.update(_person_fields(person))

        await ctx.progress(80)
        now = iso_instant(now_ms())
        record = await self.store.update_contact(
            job.companyId, job.contactId,
            lambda current: merge_contact(current, job.contactId, job.companyId, found, unavailable, now, ctx.id))
        await ctx.progress(100)
        return record

    def _dns(self) -> dns.asyncresolver.Resolver | None:
        if not self._resolver_ready:
            self.resolver, self._resolver_ready = system_resolver(), True
        return self.resolver


def canonical_linkedin(url: str) -> tuple[str, str]:
    """(https://www.linkedin.com/in/<slug>, slug) for a profile URL in any of its forms
    (country subdomains, query strings, trailing paths); ValueError saying why not."""
    parts = urlsplit(url.strip())
    host = (parts.hostname or "").lower()
    if host != "linkedin.com" and not host.endswith(".linkedin.com"):
        raise ValueError("not a linkedin.com address")
    segments = [s for s in parts.path.split("/") if s]
    if len(segments) < 2 or segments[0].lower() != "in":
        raise ValueError("not a profile URL (https://www.linkedin.com/in/<name>)")
    if not _SLUG.fullmatch(segments[1]):
        raise ValueError(f"{segments[1]!r} is not a profile name")
    slug = unquote(segments[1]).lower()  # profile names are case-insensitive
    return f"https://www.linkedin.com/in/{quote(slug)}", slug


def _person_fields(person: Person) -> dict[str, tuple[Any, str]]:
    return {name: (getattr(person, name), "people-api") for name in PROVIDER_FIELDS}


def _empty(value: Any) -> bool:
    return value is None or value == "" or value == [] or value == {}


def merge_contact(current: dict[str, Any] | None, contact_id: str, company_id: str,
                  found: dict[str, tuple[Any, str]], unavailable: dict[str, str], at: str,
                  job_id: str) -> dict[str, Any]:
    """The stored record updated with what this run found. Empty values never replace
    known ones; an `unknown` e-mail status does not replace a known status of the same
    address, but a new address replaces all e-mail fields (they described the old one)."""
    record = dict(current or {})
    sources: dict[str, Any] = dict(record.get("sources") or {})
    new_email = found.get("email", (None, ""))[0]
    if new_email is not None and new_email != record.get("email"):
        for name in EMAIL_FIELDS:
            record.pop(name, None)
            sources.pop(name, None)
    elif found.get("emailStatus", (None, ""))[0] == "unknown" and record.get("emailStatus") not in (None, "unknown"):
        found = {k: v for k, v in found.items() if k not in ("emailStatus", "emailReason", "emailMx")}
    for name, (value, source) in found.items():
        describes_new_address = name in EMAIL_FIELDS and name not in record
        if _empty(value) and not describes_new_address:
            continue
        record[name] = value
        sources[name] = {"source": source, "at": at, "jobId": job_id}
    record.update(contactId=contact_id, companyId=company_id, sources=sources, updatedAt=at,
                  unavailable={k: v for k, v in unavailable.items() if _empty(record.get(k))})
    return record
