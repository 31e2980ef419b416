"""The jobs a signal can trigger: a research job when its company's intent score crosses
the threshold, an enrichment job for the contact of a Job Change. record_signals.lua
claims each trigger (at most once per cooldown); the signals processor enqueues what
these build, under idempotency keys naming the signal and the rule.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from processors.kinds import ENRICHMENT, RESEARCH
from processors.models import EnrichmentData, SignalData


@dataclass(frozen=True, slots=True)
class Trigger:
    rule: str  # "intent-threshold" or "job-change"
    queue: str
    name: str  # the job's name, its kind's
    data: dict[str, Any]
    idempotency_key: str
    job_id: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {"rule": self.rule, "queue": self.queue, "jobId": self.job_id}


def contact_id(data: dict[str, Any]) -> str | None:
    contact = data.get("contactId")
    if isinstance(contact, str) and 0 < len(contact.strip()) <= 200:
        return contact.strip()
    return None


def research_trigger(signal: SignalData, profile: dict[str, str]) -> Trigger:
    # Until research has named the company, the signal's own companyName, else its id, stands in.
    name = profile.get("companyName") or _text(signal.data.get("companyName")) or signal.companyId
    data: dict[str, Any] = {"companyId": signal.companyId, "companyName": name}
    if profile.get("domain"):
        data["domain"] = profile["domain"]
    return Trigger("intent-threshold", RESEARCH.queue, RESEARCH.name, data,
                   f"signal-trigger:{signal.companyId}:{signal.signalId}:research")


def enrichment_trigger(signal: SignalData) -> Trigger:
    contact = contact_id(signal.data)
    data: dict[str, Any] = {"contactId": contact, "companyId": signal.companyId}
    # Optional details are passed on only when they are valid; a bad one is not a reason
    # to skip enriching the contact.
    for name in ("email", "linkedinUrl"):
        value = signal.data.get(name)
        if value is not None:
            try:
                EnrichmentData.model_validate({**data, name: value})
                data[name] = value
            except ValidationError:
                pass
    return Trigger("job-change", ENRICHMENT.queue, ENRICHMENT.name, data,
                   f"signal-trigger:{signal.companyId}:{signal.signalId}:enrichment")


def _text(value: Any) -> str | None:
    return value.strip()[:500] if isinstance(value, str) and value.strip() else None
