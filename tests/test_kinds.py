"""The registry of job kinds: a kind declared halfway is refused with a message naming
it, and the real registry agrees with the default policy table, the API's job types,
the OpenAPI document, the CLI's queues and the workers' handlers."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from redis.asyncio import Redis

from api.openapi import build_openapi
from api.schemas import JOB_REQUESTS
from cli.processes import consumed_queues
from config import DEFAULT_POLICIES, Settings
from processors import build_handlers
from processors.kinds import KINDS, REPORTS, SIGNALS, JobKind, JobKinds, KindsError
from processors.models import JobData, ScheduleData
from processors.schedules import Schedules
from streams import QueueAdmin


class MailData(JobData):
    to: str


async def _mail(ctx: Any) -> dict[str, Any]:
    return {}


MAIL = JobKind(type="mail", queue="mail", name="plain-mail", model=MailData, handler=lambda settings, redis: _mail)
WITH_MAIL_ROW = [*DEFAULT_POLICIES, "mail"]


@pytest.mark.parametrize("kinds, policy_queues, expected", [
    pytest.param([*KINDS, replace(MAIL, handler=None)], WITH_MAIL_ROW,
                 "job kind 'mail' (queue 'mail'): no handler factory", id="no handler"),
    pytest.param([*KINDS, replace(MAIL, model=None)], WITH_MAIL_ROW,
                 "job kind 'mail' (queue 'mail'): no data model", id="no model"),
    pytest.param([*KINDS, replace(MAIL, name="")], WITH_MAIL_ROW,
                 "job kind 'mail' (queue 'mail'): no name", id="no name"),
    pytest.param([*KINDS, MAIL], list(DEFAULT_POLICIES),
                 "job kind 'mail' (queue 'mail'): no policy row for queue 'mail' in config/defaults.py "
                 "DEFAULT_POLICIES", id="no policy row"),
    pytest.param(list(KINDS), WITH_MAIL_ROW,
                 "DEFAULT_POLICIES row 'mail': no job kind consumes the queue", id="a row without a kind"),
    pytest.param([*KINDS, replace(MAIL, type="signal")], WITH_MAIL_ROW,
                 "job kind 'signal' (queue 'mail'): type 'signal' is already job kind 'signal''s", id="same type"),
    pytest.param([*KINDS, replace(MAIL, queue="signals")], list(DEFAULT_POLICIES),
                 "job kind 'mail' (queue 'signals'): queue 'signals' is already job kind 'signal''s", id="same queue"),
    pytest.param([*KINDS, replace(MAIL, name=REPORTS.name)], WITH_MAIL_ROW,
                 "job kind 'mail' (queue 'mail'): name 'analytics-report' is already job kind 'report''s",
                 id="same name"),
])
def test_a_kind_declared_halfway_is_refused(kinds: list[JobKind], policy_queues: list[str], expected: str) -> None:
    with pytest.raises(KindsError) as caught:
        JobKinds(kinds, policy_queues)
    assert expected in str(caught.value)


def test_a_whole_kind_is_accepted() -> None:
    kinds = JobKinds([*KINDS, MAIL], WITH_MAIL_ROW)
    assert kinds.by_type["mail"] is kinds.by_queue["mail"] is MAIL
    assert kinds.queues == (*KINDS.queues, "mail")


async def test_the_registry_policies_api_openapi_cli_and_workers_agree(
        engine_redis: Redis, make_settings: Callable[..., Settings]) -> None:
    settings = Settings()
    assert set(KINDS.queues) == set(DEFAULT_POLICIES)
    assert list(JOB_REQUESTS) == list(KINDS.types) == ["research", "enrichment", "report", "signal"]

    body = build_openapi(settings)["paths"]["/api/jobs"]["post"]["requestBody"]["content"]["application/json"]
    mapping = body["schema"]["discriminator"]["mapping"]
    assert list(mapping) == list(KINDS.types)
    components = build_openapi(settings)["components"]["schemas"]
    for kind in KINDS:
        request = components[mapping[kind.type].rsplit("/", 1)[1]]["properties"]
        assert request["type"]["const"] == kind.type
        assert request["data"]["$ref"].endswith("/" + kind.model.__name__)

    assert consumed_queues(None, settings) == list(KINDS.queues)
    assert list(build_handlers(make_settings(), engine_redis)) == list(KINDS.queues)


async def test_the_signals_handler_is_the_batch_handler_unless_signals_keep_records(
        engine_redis: Redis, make_settings: Callable[..., Settings]) -> None:
    assert getattr(SIGNALS.handler(make_settings(), engine_redis), "handles_batches", False)
    recorded = SIGNALS.handler(make_settings(signals={"records": True}), engine_redis)
    assert not getattr(recorded, "handles_batches", False)


async def test_the_reports_kind_fires_due_schedules_beside_its_workers(
        engine_redis: Redis, make_settings: Callable[..., Settings]) -> None:
    settings = make_settings(schedule_poll_interval=0.05)
    schedule = ScheduleData(companyId="comp_1", reportType="weekly", cron="@daily", userId="u_1")
    await Schedules(settings, engine_redis).create(schedule, now=datetime.now(UTC) - timedelta(days=2))
    stopping = asyncio.Event()
    (companion,) = REPORTS.companions
    task = asyncio.create_task(companion(settings, engine_redis, stopping))
    admin = QueueAdmin(engine_redis, settings)
    try:
        async with asyncio.timeout(10):
            while (await admin.status(REPORTS.queue)).counts["waiting"] == 0:
                await asyncio.sleep(0.05)
    finally:
        stopping.set()
        await task
    (job,) = (await admin.job_page(REPORTS.queue, None, limit=10)).jobs
    assert job.name == REPORTS.name and job.data["companyId"] == "comp_1"


def test_importing_the_api_and_the_registry_loads_no_handler_dependency() -> None:
    heavy = ("feedparser", "vaderSentiment", "dns", "jinja2", "aiosmtplib")
    code = ("import sys, api.app, processors.kinds, processors.intake; "
            f"print(sorted({{m.split('.')[0] for m in sys.modules}} & set({heavy!r})))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"
