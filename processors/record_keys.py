"""Key names of the domain records, built in one place: every record of a company
under the company's hash tag (one Cluster slot per company), directories that find a
record from its id alone, and the report schedules. Only processors.store and the
scripts it calls (through KEYS) use them.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from datetime import date

_SAFE_ID = re.compile(r"[A-Za-z0-9_.@+-]{1,128}")
COUNT_FIELD = "n:"  # day hash fields "n:<signal type>" count signals; "intent"/"intentAt" snapshot the score


def key_part(value: str) -> str:
    """An outside id as it may appear in a key name. Ids of safe characters stay readable;
    any other (braces, colons, spaces, very long) becomes `~` + a digest, so no id can
    break a hash tag or alias another key. `~` is never a safe character: no collisions."""
    if _SAFE_ID.fullmatch(value):
        return value
    return "~" + hashlib.sha256(value.encode()).hexdigest()[:32]


@dataclass(frozen=True, slots=True)
class CompanyKeys:
    """Key names of one company: `{<prefix>:co:<companyId>}:...`."""

    prefix: str
    company_id: str
    tag: str = field(init=False, repr=False, compare=False)  # built once: every key starts with it

    def __post_init__(self) -> None:
        object.__setattr__(self, "tag", f"{{{self.prefix}:co:{key_part(self.company_id)}}}")

    @property
    def profile(self) -> str:
        """Hash: companyName, domain, updatedAt."""
        return f"{self.tag}:profile"

    @property
    def signals(self) -> str:
        """List of the newest signals (JSON), newest first, capped."""
        return f"{self.tag}:signals"

    @property
    def intent(self) -> str:
        """Hash: score, at (ms) - the decayed intent score as of `at`."""
        return f"{self.tag}:intent"

    @property
    def engaged(self) -> str:
        """Sorted set: contact id -> first engagement (ms)."""
        return f"{self.tag}:engaged"

    def day(self, day: date) -> str:
        """Hash of one local day: "n:<type>" counts, and the intent score's last
        snapshot that day ("intent", "intentAt"). Expires after the retention."""
        return f"{self.tag}:day:{day.isoformat()}"

    def day_contacts(self, day: date) -> str:
        """Set of the contacts engaged on one local day."""
        return f"{self.tag}:day:{day.isoformat()}:contacts"

    def seen(self, signal_id: str) -> str:
        """A signal already recorded; holds the triggers its first run claimed."""
        return f"{self.tag}:seen:{key_part(signal_id)}"

    @property
    def research_cooldown(self) -> str:
        return f"{self.tag}:cooldown:research"

    def contact_cooldown(self, contact_id: str) -> str:
        return f"{self.tag}:cooldown:contact:{key_part(contact_id)}"

    @property
    def contacts(self) -> str:
        """Set of the company's contact ids."""
        return f"{self.tag}:contacts"

    def contact(self, contact_id: str) -> str:
        return f"{self.tag}:contact:{key_part(contact_id)}"

    @property
    def research_index(self) -> str:
        """Sorted set: research id -> generated at (ms)."""
        return f"{self.tag}:research"

    def research(self, research_id: str) -> str:
        return f"{self.tag}:research:{key_part(research_id)}"

    @property
    def report_index(self) -> str:
        """Sorted set: report id -> generated at (ms)."""
        return f"{self.tag}:reports"

    def report(self, report_id: str) -> str:
        return f"{self.tag}:report:{key_part(report_id)}"

    def report_html(self, report_id: str) -> str:
        return f"{self.tag}:report:{key_part(report_id)}:html"

    @property
    def outbox(self) -> str:
        """Stream of the company's record rows not yet in PostgreSQL (only with a
        DATABASE_URL); appended in the same step as the records, drained by the sink."""
        return f"{self.tag}:outbox"


@dataclass(frozen=True, slots=True)
class DirectoryKeys:
    """Hashes from a record's id to its company id: `{<prefix>:dir}:<kind>`."""

    prefix: str

    @property
    def tag(self) -> str:
        return f"{{{self.prefix}:dir}}"

    @property
    def contacts(self) -> str:
        return f"{self.tag}:contacts"

    @property
    def research(self) -> str:
        return f"{self.tag}:research"

    @property
    def reports(self) -> str:
        return f"{self.tag}:reports"


@dataclass(frozen=True, slots=True)
class SinkKeys:
    """The PostgreSQL sink's own keys: `{<prefix>:sink}:...`."""

    prefix: str

    @property
    def tag(self) -> str:
        return f"{{{self.prefix}:sink}}"

    @property
    def outboxes(self) -> str:
        """Set of the company ids that have an outbox; added before a company's first
        outbox entry, so a sweep over it finds every entry."""
        return f"{self.tag}:outboxes"

    @property
    def waiting(self) -> str:
        """Sorted set: company id -> a counter bumped after each outbox append; the sink
        drains these companies and removes one only if its counter did not move."""
        return f"{self.tag}:waiting"

    @property
    def dead(self) -> str:
        """Stream of rows PostgreSQL rejected, each with the database's reason."""
        return f"{self.tag}:dead"

    @property
    def totals(self) -> str:
        """Hash: table -> rows written to PostgreSQL."""
        return f"{self.tag}:totals"


@dataclass(frozen=True, slots=True)
class ScheduleKeys:
    """Report schedules are shared by all companies: `{<prefix>:schedules}:...`."""

    prefix: str

    @property
    def tag(self) -> str:
        return f"{{{self.prefix}:schedules}}"

    @property
    def definitions(self) -> str:
        """Hash: schedule id -> definition (JSON)."""
        return f"{self.tag}:defs"

    @property
    def due(self) -> str:
        """Sorted set: schedule id -> next due time (ms)."""
        return f"{self.tag}:due"
