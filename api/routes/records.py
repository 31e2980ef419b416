"""The processors' records and report schedules: a company's overview, a contact, a
research brief, a report (JSON, or its HTML page when the client prefers text/html);
report schedules created, listed and deleted.

Every path id is checked before a key is built: record ids have the shape their
processor gives them (`res_...`, `rep_...`, `sch_...`), outside ids (companies,
contacts) the shape the job models accept; anything else is a 404 like an unknown id.
"""

from __future__ import annotations

import re
from datetime import timedelta
from typing import TypeVar

from aiohttp import web

from api.errors import NotFound
from api.messages import query, read_json, respond, validated
from api.routes.common import audit
from api.scope import require_scope, scoped
from api.record_schemas import (CompanyView, ContactView, ReportView, ResearchView, ScheduleDeleted, ScheduleList,
                                ScheduleQuery, ScheduleView)
from api.state import PRODUCER, REDIS, SETTINGS
from processors.models import ScheduleData
from processors.periods import local_day, now_ms
from processors.schedules import Schedule, Schedules
from processors.store import Store

OVERVIEW_DAYS = 30  # local days of signal analytics in a company's overview
OUTSIDE_ID_MAX = 200  # as processors.models.Identifier
_RECORD_SUFFIX = r"[A-Za-z0-9_-]{1,100}"  # a job id's part after its queue (processors.models.record_id)
_RECORD_IDS = {kind: re.compile(rf"^{kind}_{_RECORD_SUFFIX}$") for kind in ("res", "rep", "sch")}
RECORD_ID_PATTERNS = {"researchId": _RECORD_IDS["res"], "reportId": _RECORD_IDS["rep"],
                      "scheduleId": _RECORD_IDS["sch"]}  # the path parameters' shapes, for the document
HTML, JSON = "text/html", "application/json"
T = TypeVar("T")


def _outside_id(request: web.Request, name: str, what: str) -> str:
    """A company or contact id as the job models store it: 1 to 200 printable
    characters, no surrounding whitespace (the models strip it)."""
    value = request.match_info[name]
    if not (0 < len(value) <= OUTSIDE_ID_MAX and value == value.strip() and value.isprintable()):
        raise NotFound(f"{what} {value!r} not found")
    return value


def _record_id(request: web.Request, name: str, kind: str, what: str) -> str:
    value = request.match_info[name]
    if not _RECORD_IDS[kind].match(value):
        raise NotFound(f"{what} {value!r} not found")
    return value


def _store(request: web.Request) -> Store:
    return Store(request.app[REDIS], request.app[SETTINGS])


def _found(record: T | None, what: str, record_id: str) -> T:
    if record is None:
        raise NotFound(f"{what} {record_id!r} not found")
    return record


def _schedules(request: web.Request) -> Schedules:
    return Schedules(request.app[SETTINGS], request.app[REDIS], request.app[PRODUCER])


# -- records ------------------------------------------------------------------------------

async def get_company(request: web.Request) -> web.Response:
    company_id = _outside_id(request, "companyId", "company")
    await require_scope(request, company=company_id)
    today = local_day(now_ms(), request.app[SETTINGS].zone)
    days = [today - timedelta(days=n) for n in range(OVERVIEW_DAYS - 1, -1, -1)]
    overview = await _store(request).company_overview(company_id, days)
    if overview is None:
        raise NotFound(f"company {company_id!r} not found: no signal, research or contact of it is stored")
    return respond(CompanyView.model_validate(overview))


async def get_contact(request: web.Request) -> web.Response:
    contact_id = _outside_id(request, "contactId", "contact")
    record = _found(await _store(request).contact(contact_id), "contact", contact_id)
    await require_scope(request, company=str(record.get("companyId", "")))
    return respond(ContactView.model_validate(record))


async def get_research(request: web.Request) -> web.Response:
    research_id = _record_id(request, "researchId", "res", "research")
    record = _found(await _store(request).research(research_id), "research", research_id)
    await require_scope(request, company=str(record.get("companyId", "")))
    return respond(ResearchView.model_validate(record))


async def get_report(request: web.Request) -> web.Response:
    report_id = _record_id(request, "reportId", "rep", "report")
    store = _store(request)
    if scoped(request):
        record = _found(await store.report(report_id), "report", report_id)
        await require_scope(request, company=str(record.get("companyId", "")))
    if prefers_html(request.headers.get("Accept", "")):
        html = _found(await store.report_html(report_id), "report", report_id)
        response = web.Response(text=html, content_type=HTML, charset="utf-8")
    else:
        record = _found(await store.report(report_id), "report", report_id)
        response = respond(ReportView.model_validate(record))
    response.headers["Vary"] = "Accept"
    return response


def prefers_html(accept: str) -> bool:
    """Whether an Accept header ranks text/html above application/json (each ranked by
    its most specific matching range); a tie, or no header, answers JSON."""
    best: dict[str, tuple[int, float]] = {}  # media type -> (specificity, q)
    for part in accept.split(","):
        media, *params = (p.strip() for p in part.split(";"))
        media = media.lower()
        q = 1.0
        for param in params:
            name, _, value = param.partition("=")
            if name.strip().lower() == "q":
                try:
                    q = float(value)
                except ValueError:
                    q = 0.0
        for wanted in (HTML, JSON):
            kind = wanted.split("/")[0]
            specificity = 3 if media == wanted else 2 if media == f"{kind}/*" else 1 if media == "*/*" else 0
            if specificity and specificity > best.get(wanted, (0, 0.0))[0]:
                best[wanted] = (specificity, q)
    return best.get(HTML, (0, 0.0))[1] > best.get(JSON, (0, 0.0))[1]


# -- report schedules -------------------------------------------------------------------

def _view(schedule: Schedule) -> ScheduleView:
    return ScheduleView.model_validate(schedule.as_dict())


async def create_schedule(request: web.Request) -> web.Response:
    data = validated(ScheduleData, await read_json(request))
    await require_scope(request, company=data.companyId, email_to=data.emailTo)
    schedule = await _schedules(request).create(data)
    await audit(request, "create-schedule", schedule.id, data.model_dump(mode="json"),
                {"nextRunAt": schedule.nextRunAt})
    return respond(_view(schedule), 201)


async def list_schedules(request: web.Request) -> web.Response:
    params = query(request, ScheduleQuery)
    schedules = await _schedules(request).list(params.companyId)
    return respond(ScheduleList(schedules=[_view(s) for s in schedules]))


async def delete_schedule(request: web.Request) -> web.Response:
    schedule_id = _record_id(request, "scheduleId", "sch", "schedule")
    if not await _schedules(request).delete(schedule_id):
        raise NotFound(f"schedule {schedule_id!r} not found")
    await audit(request, "delete-schedule", schedule_id, {}, {"deleted": True})
    return respond(ScheduleDeleted(id=schedule_id, deleted=True))
