"""Object-level scope of tokens (issue 13, finding 11): a token with `companies` (glob
patterns) and `emailDomains` may add jobs, signals and schedules, and read records, of
its companies only and have reports e-mailed to its domains only; anything else is a
403 recorded in the audit trail, and nothing is written."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from conftest import ADMIN_TOKEN, TOKENS, Api, StartApi

from api.state import REDIS
from config import Settings
from processors.store import Store

SCOPED_PRODUCER = "scoped-producer-token-1a2b3c4d"
SCOPED_VIEWER = "scoped-viewer-token-5e6f7a8b9c"
SCOPED = [
    *TOKENS,
    {"name": "acme-crm", "role": "producer", "token": SCOPED_PRODUCER, "companies": ["acme-*", "comp_acme"],
     "emailDomains": ["acme.com", "*.acme.com"]},
    {"name": "acme-board", "role": "viewer", "token": SCOPED_VIEWER, "companies": ["acme-*"]},
]


@pytest.fixture
async def scoped_api(start_api: StartApi, make_settings: Callable[..., Settings]) -> Api:
    api = await start_api(make_settings(api_tokens=SCOPED))
    api.token = SCOPED_PRODUCER
    return api


def job(job_type: str, **data: Any) -> dict[str, Any]:
    return {"type": job_type, "data": data}


async def refusals(api: Api) -> list[dict[str, Any]]:
    _, page = await api.get("/api/audit", token=ADMIN_TOKEN)
    return [e for e in page["entries"] if e["action"] == "refused"]


async def test_writes_outside_the_scope_are_403_and_audited(scoped_api: Api) -> None:
    api = scoped_api
    outside = [
        ("/api/jobs", job("research", companyId="globex-1", companyName="Globex")),
        ("/api/jobs", job("report", companyId="acme-1", reportType="weekly", userId="u", emailTo="boss@evil.example")),
        ("/api/jobs", job("report", companyId="acme-1", reportType="weekly", userId="u", emailTo="x@notacme.com")),
        ("/api/signals", [{"signalId": "s1", "signalType": "Email Open", "companyId": "acme-1", "data": {}},
                          {"signalId": "s2", "signalType": "Email Open", "companyId": "globex", "data": {}}]),
        ("/api/schedules", {"companyId": "globex", "reportType": "weekly", "cron": "@daily", "userId": "u"}),
        ("/api/schedules", {"companyId": "acme-1", "reportType": "weekly", "cron": "@daily", "userId": "u",
                            "emailTo": "someone@gmail.com"}),
    ]
    for path, body in outside:
        status, answer = await api.post(path, body)
        assert (status, answer["error"]) == (403, "forbidden"), (path, answer)
        assert "acme-crm may not" in answer["message"]
    assert "signal 1: " in (await api.post(*outside[3]))[1]["message"]
    _, overview = await api.get("/api/jobs")
    assert overview["totalJobs"] == 0
    assert (await api.get("/api/schedules"))[1]["schedules"] == []

    entries = await refusals(api)
    assert len(entries) == len(outside) + 1
    assert {e["who"] for e in entries} == {"acme-crm"}
    assert {e["target"] for e in entries} >= {"globex-1", "globex", "boss@evil.example"}
    assert all(e["effect"]["status"] == 403 and "may not" in e["effect"]["reason"] for e in entries)

    inside = [
        ("/api/jobs", job("research", companyId="acme-1", companyName="Acme")),
        ("/api/jobs", job("research", companyId="comp_acme", companyName="Acme")),
        ("/api/jobs", job("report", companyId="acme-1", reportType="weekly", userId="u", emailTo="m@ACME.com")),
        ("/api/jobs", job("report", companyId="acme-1", reportType="weekly", userId="u", emailTo="m@eu.acme.com")),
        ("/api/signals", {"signalId": "s3", "signalType": "Email Open", "companyId": "acme-2", "data": {}}),
        ("/api/schedules", {"companyId": "acme-1", "reportType": "weekly", "cron": "@daily", "userId": "u"}),
    ]
    for path, body in inside:
        status, answer = await api.post(path, body)
        assert status in (201, 202), (path, answer)
    assert len(await refusals(api)) == len(outside) + 1


async def test_reads_of_other_companies_are_403_for_a_scoped_viewer(scoped_api: Api) -> None:
    api, settings = scoped_api, scoped_api.settings
    store = Store(api.client.server.app[REDIS], settings)  # type: ignore[union-attr]
    for company in ("acme-1", "globex"):
        await store.save_profile(company, companyName=company.title(), domain=None)
        await store.save_research({"researchId": f"res_{company}", "jobId": "j", "companyId": company,
                                   "companyName": company, "summary": "s", "insights": [], "sources": [],
                                   "unavailable": {}, "generatedAt": "2024-01-15T10:30:00.000Z",
                                   "sentiment": "unknown", "provider": "builtin"}, 1)
    assert (await api.get("/api/companies/acme-1", token=SCOPED_VIEWER))[0] == 200
    assert (await api.get("/api/research/res_acme-1", token=SCOPED_VIEWER))[0] == 200
    for path in ("/api/companies/globex", "/api/research/res_globex", "/api/companies/never-stored"):
        status, answer = await api.get(path, token=SCOPED_VIEWER)
        assert (status, answer["error"]) == (403, "forbidden"), (path, answer)
    # The unscoped viewer reads everything, as before.
    assert (await api.get("/api/research/res_globex", token=TOKENS[2]["token"]))[0] == 200
    assert {e["who"] for e in await refusals(api)} == {"acme-board"}
