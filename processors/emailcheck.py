"""Checks an e-mail address: normalised with email-validator, deliverability by an MX
lookup with a short timeout (DNS that cannot be reached gives `unknown`, never
`invalid`), and flags for role accounts, free-mail domains and the company's domain.
Enrichment calls `check_email`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

import dns.asyncresolver
import dns.exception
import dns.resolver
from email_validator import EmailNotValidError, validate_email

Deliverability = Literal["deliverable", "undeliverable", "unknown"]

# Local parts that name a function rather than a person.
ROLE_ACCOUNTS = frozenset("""
abuse accounting accounts admin administrator billing careers contact customerservice dev
enquiries finance hello help helpdesk hostmaster hr info inquiries it jobs legal mail
marketing media news newsletter no-reply noreply office orders postmaster press privacy
recruiting sales security service support team webmaster
""".split())

# Mailbox providers anyone can sign up to: an address there says nothing about an employer.
FREE_MAIL_DOMAINS = frozenset("""
aol.com gmail.com googlemail.com gmx.com gmx.de gmx.net hey.com hotmail.co.uk hotmail.com
hotmail.de hotmail.fr icloud.com live.com mac.com mail.com mail.ru me.com msn.com outlook.com
outlook.de proton.me protonmail.com qq.com 163.com 126.com t-online.de tutanota.com web.de
yahoo.co.uk yahoo.com yahoo.de yahoo.fr yandex.com yandex.ru zoho.com fastmail.com
""".split())


@dataclass(slots=True)
class EmailCheck:
    address: str  # normalised
    domain: str
    status: Deliverability
    reason: str
    mx: list[str] = field(default_factory=list)
    role: bool = False
    free_mail: bool = False
    matches_company: bool | None = None  # None: the company's domain is not known

    def fields(self) -> dict[str, Any]:
        """The contact record's e-mail fields."""
        return {"email": self.address, "emailStatus": self.status, "emailReason": self.reason,
                "emailMx": self.mx, "emailRole": self.role, "emailFreeMail": self.free_mail,
                "emailMatchesCompany": self.matches_company}


async def check_email(address: str, company_domain: str | None, *, timeout: float,
                      resolver: dns.asyncresolver.Resolver | None) -> EmailCheck:
    """`resolver` None means the system's resolver could not be configured (no DNS)."""
    try:
        valid = validate_email(address, check_deliverability=False)
    except EmailNotValidError as exc:
        return EmailCheck(address, address.rpartition("@")[2], "undeliverable", f"invalid address: {exc}")
    domain = valid.ascii_domain
    check = EmailCheck(valid.normalized, domain, "unknown", "", role=valid.local_part.lower() in ROLE_ACCOUNTS,
                       free_mail=domain in FREE_MAIL_DOMAINS)
    if company_domain:
        check.matches_company = domain == company_domain or domain.endswith("." + company_domain)
    if resolver is None:
        check.reason = "DNS unavailable: no resolver configured"
        return check
    check.status, check.reason, check.mx = await _deliverability(resolver, domain, timeout)
    return check


async def _deliverability(resolver: dns.asyncresolver.Resolver, domain: str,
                          timeout: float) -> tuple[Deliverability, str, list[str]]:
    try:
        answer = await resolver.resolve(domain, "MX", lifetime=timeout)
        records = sorted(answer, key=lambda r: r.preference)
        hosts = [r.exchange.to_text(omit_final_dot=True) for r in records]
        if hosts in ([""], ["."]):
            return "undeliverable", "the domain accepts no mail (null MX)", []
        return "deliverable", "the domain has MX records", hosts
    except dns.resolver.NXDOMAIN:
        return "undeliverable", "the domain does not exist", []
    except dns.resolver.NoAnswer:
        pass
    except (dns.exception.Timeout, dns.resolver.NoNameservers, OSError) as exc:
        return "unknown", f"DNS unavailable: {type(exc).__name__}", []
    # No MX: mail goes to the domain's own address, if it has one (RFC 5321, 5.1).
    for rdtype in ("A", "AAAA"):
        try:
            await resolver.resolve(domain, rdtype, lifetime=timeout)
            return "deliverable", f"no MX record; the domain has an {rdtype} record", []
        except (dns.resolver.NoAnswer, dns.resolver.NXDOMAIN):
            continue
        except (dns.exception.Timeout, dns.resolver.NoNameservers, OSError) as exc:
            return "unknown", f"DNS unavailable: {type(exc).__name__}", []
    return "undeliverable", "the domain has no MX or address records", []


def system_resolver() -> dns.asyncresolver.Resolver | None:
    """The host's resolver, or None when it has no DNS configuration."""
    try:
        return dns.asyncresolver.Resolver()
    except (dns.resolver.NoResolverConfiguration, OSError):
        return None
