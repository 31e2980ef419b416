"""Request and response models of the record, report-schedule and signal-ingest
endpoints (see api.schemas for the shared bases).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from api.schemas import ErrorDetail, Request, Response


class ScheduleQuery(Request):
    companyId: Annotated[str, StringConstraints(min_length=1, max_length=200)] | None = Field(
        None, description="only this company's schedules")


class ScheduleView(Response):
    id: str
    companyId: str
    reportType: Literal["weekly", "monthly", "quarterly"]
    cron: str = Field(description="five fields or a macro, evaluated in TIMEZONE")
    emailTo: str | None
    userId: str
    createdAt: str = Field(description="ISO 8601, UTC")
    nextRunAt: str | None = Field(description="ISO 8601, UTC; the next time a report job is enqueued")


class ScheduleList(Response):
    schedules: list[ScheduleView]


class ScheduleDeleted(Response):
    id: str
    deleted: Literal[True]


class Record(BaseModel):
    """A stored domain record: the fields named here, and the processor's others."""

    model_config = ConfigDict(extra="allow")


class CompanyAnalytics(Response):
    from_: str | None = Field(alias="from", description="first local day counted (ISO date)")
    to: str | None = Field(description="last local day counted (ISO date)")
    signals: int
    byType: dict[str, int]
    byDay: list[dict[str, Any]]

    model_config = ConfigDict(extra="forbid", populate_by_name=True, serialize_by_alias=True)


class CompanyView(Response):
    companyId: str
    companyName: str | None
    domain: str | None
    intentScore: float
    analytics: CompanyAnalytics
    latestResearch: dict[str, Any] | None
    contacts: list[dict[str, Any]]


class ContactView(Record):
    contactId: str
    companyId: str
    updatedAt: str


class ResearchView(Record):
    researchId: str
    companyId: str
    summary: str | None = None
    sentiment: str
    provider: str
    generatedAt: str


class ReportView(Record):
    reportId: str
    companyId: str
    reportType: str
    periodStart: str
    periodEnd: str
    metrics: dict[str, Any]
    insights: list[str]
    recommendations: list[str]
    email: dict[str, Any]
    generatedAt: str


class SignalsQuery(Request):
    partial: bool = Field(False, description="write the valid signals of a batch and list the invalid ones; "
                                             "otherwise an invalid item writes nothing (422)")


class SignalRejected(Response):
    index: int = Field(description="the item's position in the array (or line, from 0, of the NDJSON body)")
    details: list[ErrorDetail]


class SignalsAccepted(Response):
    accepted: int
    ids: list[str] = Field(description="job ids of the written signals, in the order of the request's items "
                                       "(`signals-<entry id>`; entry ids are unique per priority lane)")
    rejected: list[SignalRejected] = Field(default_factory=list, description="with ?partial=true only")
