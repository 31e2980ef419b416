"""The read endpoints of the processors' records and the report schedules, against the
real app on real Redis: records written by the real processors, roles, 404s for unknown
and malformed ids, content negotiation of a report, and schedule validation."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any

import pytest
import redis.asyncio as aioredis
from conftest import PRODUCER_TOKEN, TOKENS, VIEWER_TOKEN, Api, StartApi
from croniter import croniter
from processor_support import make_ctx, signal

from api.routes.records import prefers_html
from processors.enrichment import EnrichmentProcessor
from processors.reports import ReportProcessor
from processors.research import ResearchProcessor
from processors.signals import SignalProcessor

ISO = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$")
SCHEDULE = {"companyId": "comp_1", "reportType": "weekly", "cron": "0 8 * * 1", "emailTo": "boss@acme-corp.com",
            "userId": "u_1"}


async def _research(api: Api, redis: aioredis.Redis, company: str = "comp_1") -> str:
    ctx = make_ctx(redis, api.settings, "research", {"companyId": company, "companyName": "Acme Corp"})
    return str((await ResearchProcessor(api.settings, redis).handle(ctx))["researchId"])


async def _report(api: Api, redis: aioredis.Redis) -> str:
    ctx = make_ctx(redis, api.settings, "reports", {"companyId": "comp_1", "reportType": "weekly", "userId": "u_1"})
    return str((await ReportProcessor(api.settings, redis).handle(ctx))["reportId"])


# -- records ----------------------------------------------------------------------------

async def test_a_company_overview_gathers_signals_research_and_contacts(api: Api,
                                                                        engine_redis: aioredis.Redis) -> None:
    await SignalProcessor(api.settings, engine_redis).process_signals([
        signal("comp_1", "Email Open", contactId="c_1"), signal("comp_1", "Demo Request")])
    research_id = await _research(api, engine_redis)
    ctx = make_ctx(engine_redis, api.settings, "enrichment", {
        "contactId": "c_1", "companyId": "comp_1", "linkedinUrl": "https://www.linkedin.com/in/jane-doe"})
    await EnrichmentProcessor(api.settings, engine_redis).handle(ctx)

    status, body = await api.get("/api/companies/comp_1", token=VIEWER_TOKEN)
    assert status == 200, body
    assert set(body) == {"companyId", "companyName", "domain", "intentScore", "analytics", "latestResearch",
                         "contacts"}
    assert body["companyId"] == "comp_1" and body["companyName"] == "Acme Corp"
    assert body["intentScore"] == pytest.approx(11.0, abs=0.01)
    analytics = body["analytics"]
    assert analytics["signals"] == 2 and analytics["byType"] == {"Email Open": 1, "Demo Request": 1}
    assert len(analytics["byDay"]) == 30 and analytics["byDay"][-1] == {"date": analytics["to"], "count": 2}
    assert body["latestResearch"]["researchId"] == research_id
    assert [c["contactId"] for c in body["contacts"]] == ["c_1"]


async def test_contact_and_research_records(api: Api, engine_redis: aioredis.Redis) -> None:
    ctx = make_ctx(engine_redis, api.settings, "enrichment", {
        "contactId": "c_9", "companyId": "comp_1", "linkedinUrl": "https://uk.linkedin.com/in/Jane-Doe/"})
    await EnrichmentProcessor(api.settings, engine_redis).handle(ctx)
    research_id = await _research(api, engine_redis)

    status, contact = await api.get("/api/contacts/c_9", token=VIEWER_TOKEN)
    assert status == 200, contact
    assert contact["contactId"] == "c_9" and contact["companyId"] == "comp_1"
    assert contact["linkedinUrl"] == "https://www.linkedin.com/in/jane-doe"
    assert "title" in contact["unavailable"]  # no people-data provider: said, not invented

    status, research = await api.get(f"/api/research/{research_id}", token=VIEWER_TOKEN)
    assert status == 200, research
    assert research["researchId"] == research_id and research["provider"] == "builtin"
    assert ISO.match(research["generatedAt"])


async def test_a_report_is_json_or_its_html_page(api: Api, engine_redis: aioredis.Redis) -> None:
    report_id = await _report(api, engine_redis)

    status, body = await api.get(f"/api/reports/{report_id}", token=VIEWER_TOKEN)
    assert status == 200, body
    assert body["reportId"] == report_id and body["reportType"] == "weekly"
    assert body["email"] == {"to": None, "status": "not requested"}

    headers = {"Authorization": f"Bearer {VIEWER_TOKEN}", "Accept": "text/html,application/xhtml+xml,*/*;q=0.8"}
    async with api.client.get(f"/api/reports/{report_id}", headers=headers) as response:
        assert response.status == 200
        assert response.content_type == "text/html" and response.headers["Vary"] == "Accept"
        page = await response.text()
    assert "<svg" in page and body["periodStart"] in page

    status, again = await api.get(f"/api/reports/{report_id}", headers={"Accept": "text/html;q=0.5, application/json"})
    assert status == 200 and again["reportId"] == report_id


@pytest.mark.parametrize("accept, html", [
    ("", False), ("*/*", False), ("application/json", False), ("text/html", True),
    ("text/html;q=0.9, application/json;q=1", False), ("text/*, application/json;q=0.5", True),
    ("text/html;q=0, */*", False), ("TEXT/HTML", True), ("text/html;q=bogus, */*;q=0.1", False),
])
def test_content_negotiation(accept: str, html: bool) -> None:
    assert prefers_html(accept) is html


@pytest.mark.parametrize("path", [
    "/api/companies/comp_nobody", "/api/contacts/c_nobody", "/api/research/res_01NOSUCHRECORD",
    "/api/reports/rep_01NOSUCHRECORD",
    # malformed: refused before any key is built
    "/api/research/rep_01ABC", "/api/research/bogus", "/api/reports/res_01ABC", "/api/reports/rep_%7Bx%7D",
    "/api/companies/%20comp_1", "/api/contacts/c%0A1", "/api/companies/" + "x" * 201,
])
async def test_unknown_and_malformed_ids_are_404(api: Api, path: str) -> None:
    status, body = await api.get(path)
    assert status == 404, body
    assert body["error"] == "not_found"


async def test_reads_need_a_token(api: Api, engine_redis: aioredis.Redis) -> None:
    research_id = await _research(api, engine_redis)
    status, _ = await api.get(f"/api/research/{research_id}", token=None)
    assert status == 401


# -- schedules --------------------------------------------------------------------------

async def test_create_list_and_delete_a_schedule(start_api: StartApi, make_settings: Any) -> None:
    api = await start_api(make_settings(api_tokens=TOKENS, timezone="Europe/Berlin"))
    before = datetime.now(UTC)
    status, created = await api.post("/api/schedules", SCHEDULE, token=PRODUCER_TOKEN)
    assert status == 201, created
    assert set(created) == {*SCHEDULE, "id", "createdAt", "nextRunAt"}
    assert {k: created[k] for k in SCHEDULE} == SCHEDULE
    assert re.fullmatch(r"sch_[0-9A-Z]{26}", created["id"])
    # Monday 08:00 in Berlin, the first one after now.
    expected = croniter("0 8 * * 1", before.astimezone(api.settings.zone)).get_next(datetime)
    assert created["nextRunAt"] == expected.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.000Z")

    other = {**SCHEDULE, "companyId": "comp_2", "cron": "@monthly", "reportType": "monthly"}
    del other["emailTo"]
    status, second = await api.post("/api/schedules", other)
    assert status == 201 and second["emailTo"] is None

    status, listed = await api.get("/api/schedules", token=VIEWER_TOKEN)
    assert status == 200 and [s["id"] for s in listed["schedules"]] == [created["id"], second["id"]]
    assert listed["schedules"][0] == created
    status, only = await api.get("/api/schedules?companyId=comp_2", token=VIEWER_TOKEN)
    assert [s["id"] for s in only["schedules"]] == [second["id"]]

    status, _ = await api.delete(f"/api/schedules/{created['id']}", token=PRODUCER_TOKEN)
    assert status == 403
    status, deleted = await api.delete(f"/api/schedules/{created['id']}")
    assert (status, deleted) == (200, {"id": created["id"], "deleted": True})
    status, _ = await api.delete(f"/api/schedules/{created['id']}")
    assert status == 404
    status, listed = await api.get("/api/schedules")
    assert [s["id"] for s in listed["schedules"]] == [second["id"]]

    status, audit = await api.get("/api/audit")
    assert [e["action"] for e in audit["entries"]][:3] == ["delete-schedule", "create-schedule", "create-schedule"]


@pytest.mark.parametrize("change, where", [
    ({"cron": "every monday"}, ["cron"]),
    ({"cron": "0 8 * * 1 5"}, ["cron"]),  # croniter's seconds field: refused
    ({"cron": "61 8 * * *"}, ["cron"]),
    ({"cron": "0 0 30 2 *"}, ["cron"]),  # valid fields, but 30 February never comes
    ({"reportType": "daily"}, ["reportType"]),
    ({"emailTo": "not-an-address"}, ["emailTo"]),
    ({"userId": ""}, ["userId"]),
    ({"color": "red"}, ["color"]),
])
async def test_invalid_schedules_are_422(api: Api, change: dict[str, Any], where: list[str]) -> None:
    status, body = await api.post("/api/schedules", {**SCHEDULE, **change})
    assert status == 422, body
    assert {"location": "body", "path": where} in [{k: d[k] for k in ("location", "path")} for d in body["details"]]
    status, listed = await api.get("/api/schedules")
    assert listed["schedules"] == []


async def test_schedule_roles_and_ids(api: Api) -> None:
    status, _ = await api.post("/api/schedules", SCHEDULE, token=VIEWER_TOKEN)
    assert status == 403
    status, _ = await api.get("/api/schedules", token=None)
    assert status == 401
    for bad in ("sch_01NOSUCHSCHEDULE", "bogus", "res_01ABC"):
        status, body = await api.delete(f"/api/schedules/{bad}")
        assert status == 404, body
    status, body = await api.get("/api/schedules?companyId=")
    assert status == 422 and body["details"][0]["path"] == ["companyId"]
    status, body = await api.post("/api/schedules", data=b"{not json")
    assert status == 400
