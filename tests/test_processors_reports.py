"""The reports processor and report schedules against real Redis and a real SMTP server
(aiosmtpd) started by the test: the e-mail (subject, recipients, text and HTML parts),
the report stored before sending and a failed send failing the attempt, period
boundaries (ISO week, month, quarter, year end, time zone), and a schedule firing
exactly once with three workers calling fire_due_schedules at once."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from email.message import EmailMessage
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import redis.asyncio as aioredis
from fake_services import FakeSmtp, smtp_server  # noqa: F401  (fixture)
from processor_support import drain, jobs, make_ctx, signal
from redis_server import client as own_client

from config import Settings
from processors.errors import ProviderUnavailable
from processors.models import ScheduleData
from processors.periods import Period, iso_instant, last_complete, midnight_ms, period_containing
from processors.reports import ReportProcessor
from processors.schedules import Schedules
from processors.signals import SignalProcessor
from processors.store import Store
from streams import Producer, QueueAdmin

ZONE = "America/New_York"
MINUTE_MS = 60_000
REPORT = {"companyId": "comp_1", "reportType": "weekly", "userId": "u_1", "emailTo": "boss@acme-corp.com"}
FAST_REPORTS = {"rate_limit": "none", "backoff_delay": 0.05}


def smtp_settings(make_settings: Callable[..., Settings], smtp: FakeSmtp, **more: Any) -> Settings:
    return make_settings(**{"smtp_host": smtp.host, "smtp_port": smtp.port, "smtp_starttls": False,
                            "smtp_username": "reports", "smtp_password": "secret",
                            "smtp_from": "Reports <reports@tgjobs.test>", "timezone": ZONE, "reports": FAST_REPORTS,
                            **more})


def parts(message: EmailMessage) -> dict[str, str]:
    return {part.get_content_type(): part.get_content() for part in message.iter_parts()}


async def _signals_around(settings: Settings, redis: aioredis.Redis, period: Period) -> None:
    """One signal a minute into the period, one in its last minute, one in the last minute
    of the period before, one at the first instant after it (not in the report)."""
    zone = settings.zone
    start, end = period.start_ms(zone), period.end_ms(zone)
    await SignalProcessor(settings, redis).process_signals([
        signal("comp_1", "Demo Request", timestamp=iso_instant(start + MINUTE_MS), contactId="c_1"),
        signal("comp_1", "Email Open", timestamp=iso_instant(end - MINUTE_MS), contactId="c_2"),
        signal("comp_1", "Email Open", timestamp=iso_instant(start - MINUTE_MS)),
        signal("comp_1", "Email Click", timestamp=iso_instant(end)),
    ])


# -- the report and its e-mail --------------------------------------------------------

async def test_a_report_is_stored_and_mailed_as_text_and_html(
        engine_redis: aioredis.Redis, smtp_server: FakeSmtp, make_settings: Callable[..., Settings]) -> None:  # noqa: F811
    settings = smtp_settings(make_settings, smtp_server)
    period = last_complete("weekly", datetime.now(UTC), settings.zone)
    await _signals_around(settings, engine_redis, period)
    store = Store(engine_redis, settings)
    await store.save_profile("comp_1", companyName="Acme <Rockets> & Co")
    ctx = make_ctx(engine_redis, settings, "reports", REPORT)

    result = await ReportProcessor(settings, engine_redis).handle(ctx)

    assert result == {"reportId": result["reportId"], "periodStart": period.start.isoformat(),
                      "periodEnd": period.end.isoformat(), "reportType": "weekly", "signals": 2,
                      "changePct": 100.0, "emailed": True}
    record = await store.report(result["reportId"])
    assert record is not None and record["email"]["status"] == "sent" and record["email"]["to"] == REPORT["emailTo"]
    signals = record["metrics"]["signals"]
    assert (signals["total"], signals["previousTotal"]) == (2, 1)
    assert signals["byType"]["Demo Request"] == {"count": 1, "previous": 0, "changePct": None}
    by_day = signals["byDay"]
    assert [d["date"] for d in by_day] == [d.isoformat() for d in period.days]
    assert [d["count"] for d in by_day] == [1, 0, 0, 0, 0, 0, 1]
    assert record["metrics"]["engagedContacts"] == {"count": 2, "previous": 0, "changePct": None}
    assert record["timezone"] == ZONE

    (envelope, message), = smtp_server.messages
    assert envelope.rcpt_tos == [REPORT["emailTo"]] and envelope.mail_from == "reports@tgjobs.test"
    assert smtp_server.logins == [(b"reports", b"secret")]
    assert message["Subject"] == (f"Acme <Rockets> & Co: weekly report, {period.start.isoformat()} "
                                  f"to {period.end.isoformat()}")
    assert message["To"] == REPORT["emailTo"] and message["From"] == "Reports <reports@tgjobs.test>"
    assert message["Message-ID"] == f"<{result['reportId']}@tgjobs.test>"
    assert message.get_content_type() == "multipart/alternative"
    body = parts(message)
    assert set(body) == {"text/plain", "text/html"}
    assert "Signals: 2 (previous 1, +100%)" in body["text/plain"]
    assert "Acme <Rockets> & Co: weekly report" in body["text/plain"]  # plain text is not escaped
    assert "Acme &lt;Rockets&gt; &amp; Co" in body["text/html"] and "<Rockets>" not in body["text/html"]
    assert "<svg" in body["text/html"]
    stored_html = await store.report_html(result["reportId"]) or ""
    assert body["text/html"].replace("\r\n", "\n").strip() == stored_html.strip()

    # A rerun of the same job after the send mails nothing more.
    assert await ReportProcessor(settings, engine_redis).handle(ctx) == result
    assert len(smtp_server.messages) == 1


async def test_the_report_is_stored_before_sending_and_a_failed_send_fails_the_attempt(
        engine_redis: aioredis.Redis, smtp_server: FakeSmtp, make_settings: Callable[..., Settings]) -> None:  # noqa: F811
    settings = smtp_settings(make_settings, smtp_server)
    smtp_server.fail_next = 1
    ctx = make_ctx(engine_redis, settings, "reports", REPORT)
    store = Store(engine_redis, settings)

    with pytest.raises(ProviderUnavailable, match="451"):
        await ReportProcessor(settings, engine_redis).handle(ctx)

    report_id = "rep_" + ctx.id.partition("-")[2]
    stored = await store.report(report_id)
    assert stored is not None and stored["email"] == {"to": REPORT["emailTo"], "status": "pending"}
    assert await store.report_html(report_id)
    assert smtp_server.messages == []

    result = await ReportProcessor(settings, engine_redis).handle(ctx)  # the retry
    assert result["emailed"] and result["periodStart"] == stored["periodStart"]
    assert len(smtp_server.messages) == 1
    assert (await store.report(report_id) or {})["email"]["status"] == "sent"


async def test_a_failed_send_is_retried_by_the_engine(
        engine_redis: aioredis.Redis, smtp_server: FakeSmtp, make_settings: Callable[..., Settings]) -> None:  # noqa: F811
    settings = smtp_settings(make_settings, smtp_server)
    smtp_server.fail_next = 1
    admin = QueueAdmin(engine_redis, settings)
    added = await Producer(engine_redis, settings).add("reports", REPORT)

    await drain(settings, "reports", ReportProcessor(settings, engine_redis).handle, redis=engine_redis)

    job = await admin.job(added.id)
    assert job.state.value == "completed" and job.attemptsMade == 2
    assert job.returnvalue["emailed"] is True
    assert len(smtp_server.messages) == 1


async def test_a_send_that_fails_every_attempt_dead_letters_the_job_with_the_report_kept(
        engine_redis: aioredis.Redis, smtp_server: FakeSmtp, make_settings: Callable[..., Settings]) -> None:  # noqa: F811
    settings = smtp_settings(make_settings, smtp_server)
    smtp_server.fail_next = 10
    added = await Producer(engine_redis, settings).add("reports", REPORT)

    await drain(settings, "reports", ReportProcessor(settings, engine_redis).handle, redis=engine_redis)

    job = await QueueAdmin(engine_redis, settings).job(added.id)
    assert job.state.value == "failed" and job.attemptsMade == 2 and "451" in (job.failedReason or "")
    report = await Store(engine_redis, settings).report("rep_" + added.id.partition("-")[2])
    assert report is not None and report["email"]["status"] == "pending"
    assert smtp_server.messages == []


async def test_without_smtp_the_report_is_stored_and_the_email_marked_unavailable(
        engine_redis: aioredis.Redis, make_settings: Callable[..., Settings]) -> None:
    settings = make_settings()
    ctx = make_ctx(engine_redis, settings, "reports", {**REPORT, "reportType": "monthly"})
    result = await ReportProcessor(settings, engine_redis).handle(ctx)
    assert result["emailed"] is False and result["signals"] == 0
    record = await Store(engine_redis, settings).report(result["reportId"])
    assert record is not None
    assert record["email"] == {"to": REPORT["emailTo"], "status": "unavailable",
                               "reason": "SMTP is not configured (SMTP_HOST)"}
    assert "No signals in this period or the one before." in record["insights"]


async def test_a_company_name_with_a_line_break_still_makes_a_one_line_subject(
        engine_redis: aioredis.Redis, smtp_server: FakeSmtp, make_settings: Callable[..., Settings]) -> None:  # noqa: F811
    settings = smtp_settings(make_settings, smtp_server)
    await Store(engine_redis, settings).save_profile("comp_1", companyName="Acme\r\nBcc: victim@example.com")
    result = await ReportProcessor(settings, engine_redis).handle(make_ctx(engine_redis, settings, "reports", REPORT))
    assert result["emailed"]
    (envelope, message), = smtp_server.messages
    assert envelope.rcpt_tos == [REPORT["emailTo"]] and message["Bcc"] is None
    assert message["Subject"].startswith("Acme Bcc: victim@example.com: weekly report")


# -- periods ------------------------------------------------------------------------------

def _at(text: str, zone: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=ZoneInfo(zone))


@pytest.mark.parametrize("kind, moment, zone, start, end, previous_start, previous_end", [
    # ISO weeks, Monday first; the week spanning the year end is one week.
    ("weekly", "2024-01-17T12:00", "UTC", "2024-01-08", "2024-01-14", "2024-01-01", "2024-01-07"),
    ("weekly", "2025-01-02T09:00", "UTC", "2024-12-23", "2024-12-29", "2024-12-16", "2024-12-22"),
    ("weekly", "2025-01-06T00:00", "UTC", "2024-12-30", "2025-01-05", "2024-12-23", "2024-12-29"),
    ("weekly", "2025-01-05T23:59", "UTC", "2024-12-23", "2024-12-29", "2024-12-16", "2024-12-22"),
    # months: leap February, and January looking back across the year end
    ("monthly", "2024-03-01T00:00", "UTC", "2024-02-01", "2024-02-29", "2024-01-01", "2024-01-31"),
    ("monthly", "2024-01-15T08:00", "UTC", "2023-12-01", "2023-12-31", "2023-11-01", "2023-11-30"),
    ("monthly", "2023-03-31T23:59", "UTC", "2023-02-01", "2023-02-28", "2023-01-01", "2023-01-31"),
    # quarters, and the quarter before the first one of a year
    ("quarterly", "2024-01-01T00:00", "UTC", "2023-10-01", "2023-12-31", "2023-07-01", "2023-09-30"),
    ("quarterly", "2024-05-20T10:00", "UTC", "2024-01-01", "2024-03-31", "2023-10-01", "2023-12-31"),
    ("quarterly", "2024-12-31T23:59", "UTC", "2024-07-01", "2024-09-30", "2024-04-01", "2024-06-30"),
])
def test_last_complete_period(kind: Any, moment: str, zone: str, start: str, end: str, previous_start: str,
                              previous_end: str) -> None:
    period = last_complete(kind, _at(moment, zone), ZoneInfo(zone))
    assert (period.start.isoformat(), period.end.isoformat()) == (start, end)
    previous = period.previous()
    assert (previous.start.isoformat(), previous.end.isoformat()) == (previous_start, previous_end)
    assert previous.end + timedelta(days=1) == period.start


@pytest.mark.parametrize("kind, utc, zone, start", [
    # 2024-01-01T03:30Z is New Year's Day in UTC and Berlin, still New Year's Eve in New York.
    ("weekly", "2024-01-01T03:30", "UTC", "2023-12-25"),
    ("weekly", "2024-01-01T03:30", "America/New_York", "2023-12-18"),
    ("monthly", "2024-01-01T03:30", "Europe/Berlin", "2023-12-01"),
    ("monthly", "2024-01-01T03:30", "America/New_York", "2023-11-01"),
    ("quarterly", "2024-01-01T03:30", "UTC", "2023-10-01"),
    ("quarterly", "2024-01-01T03:30", "America/New_York", "2023-07-01"),
    # 2023-12-31T23:30Z is already 2024 in Tokyo: the year's last quarter is complete there.
    ("quarterly", "2023-12-31T23:30", "Asia/Tokyo", "2023-10-01"),
    ("quarterly", "2023-12-31T23:30", "UTC", "2023-07-01"),
])
def test_the_time_zone_decides_which_period_is_complete(kind: Any, utc: str, zone: str, start: str) -> None:
    assert last_complete(kind, _at(utc, "UTC"), ZoneInfo(zone)).start.isoformat() == start


def test_period_instants_are_local_midnights_across_daylight_saving() -> None:
    berlin = ZoneInfo("Europe/Berlin")
    week = period_containing("weekly", date(2024, 3, 27))  # clocks go forward on Sunday 31 March
    assert (week.start, week.end, len(week.days)) == (date(2024, 3, 25), date(2024, 3, 31), 7)
    assert week.start_ms(berlin) == int(datetime(2024, 3, 24, 23, 0, tzinfo=UTC).timestamp() * 1000)
    assert week.end_ms(berlin) == int(datetime(2024, 3, 31, 22, 0, tzinfo=UTC).timestamp() * 1000)
    assert week.end_ms(berlin) - week.start_ms(berlin) == (7 * 24 - 1) * 3600 * 1000
    quarter = period_containing("quarterly", date(2024, 2, 29))
    assert (quarter.start, quarter.end, len(quarter.days)) == (date(2024, 1, 1), date(2024, 3, 31), 91)
    assert quarter.end_ms(berlin) == midnight_ms(date(2024, 4, 1), berlin)


async def test_signals_are_counted_by_local_day_at_the_period_edges(
        engine_redis: aioredis.Redis, make_settings: Callable[..., Settings]) -> None:
    # Tokyo is 9 hours ahead of UTC: the UTC calendar would split these days differently.
    settings = make_settings(timezone="Asia/Tokyo")
    period = last_complete("monthly", datetime.now(UTC), settings.zone)
    await _signals_around(settings, engine_redis, period)
    ctx = make_ctx(engine_redis, settings, "reports", {**REPORT, "reportType": "monthly", "emailTo": None})
    result = await ReportProcessor(settings, engine_redis).handle(ctx)
    record = await Store(engine_redis, settings).report(result["reportId"])
    assert record is not None
    by_day = record["metrics"]["signals"]["byDay"]
    assert by_day[0] == {"date": period.start.isoformat(), "count": 1}
    assert by_day[-1] == {"date": period.end.isoformat(), "count": 1}
    assert (record["metrics"]["signals"]["total"], record["metrics"]["signals"]["previousTotal"]) == (2, 1)
    assert record["previousEnd"] == (period.start - timedelta(days=1)).isoformat()


# -- schedules ----------------------------------------------------------------------------

SCHEDULE = ScheduleData(companyId="comp_1", reportType="weekly", cron="*/5 * * * *", emailTo="boss@acme-corp.com",
                        userId="u_1")
T0 = datetime(2024, 1, 15, 9, 2, tzinfo=UTC)


async def test_a_schedule_fires_exactly_once_with_three_workers(
        redis_url: str, engine_redis: aioredis.Redis, smtp_server: FakeSmtp,  # noqa: F811
        make_settings: Callable[..., Settings]) -> None:
    settings = smtp_settings(make_settings, smtp_server)
    schedule = await Schedules(settings, engine_redis).create(SCHEDULE, now=T0)
    assert schedule.nextRunAt == "2024-01-15T09:05:00.000Z"
    clients = [own_client(redis_url, decode_responses=True) for _ in range(3)]
    try:
        workers = [Schedules(settings, client) for client in clients]
        due = T0 + timedelta(minutes=4)  # 09:06: the 09:05 run is due
        rounds = [await asyncio.gather(*(w.fire_due_schedules(due + timedelta(milliseconds=i)) for w in workers))
                  for i in range(5)]
    finally:
        for client in clients:
            await client.aclose()
    created = [job_id for calls in rounds for ids in calls for job_id in ids]
    assert len(created) == 1
    (job,) = await jobs(engine_redis, settings, "reports")
    assert job.id == created[0] and job.name == "analytics-report"
    assert job.data == {"companyId": "comp_1", "reportType": "weekly", "userId": "u_1",
                        "emailTo": "boss@acme-corp.com"}
    assert (await Schedules(settings, engine_redis).get(schedule.id)).nextRunAt == "2024-01-15T09:10:00.000Z"

    # The job it enqueued runs and mails the report once.
    await drain(settings, "reports", ReportProcessor(settings, engine_redis).handle, redis=engine_redis)
    assert len(smtp_server.messages) == 1
    assert smtp_server.messages[0][0].rcpt_tos == ["boss@acme-corp.com"]


async def test_a_caller_that_died_before_moving_the_due_time_causes_no_second_job(
        engine_redis: aioredis.Redis, make_settings: Callable[..., Settings]) -> None:
    settings = make_settings()
    schedules = Schedules(settings, engine_redis)
    schedule = await schedules.create(SCHEDULE, now=T0)
    due = T0 + timedelta(minutes=4)
    assert len(await schedules.fire_due_schedules(due)) == 1
    # As if the caller had died after adding the job: the due time is back where it was.
    await engine_redis.zadd(schedules.keys.due, {schedule.id: int(datetime(2024, 1, 15, 9, 5, tzinfo=UTC)
                                                                  .timestamp() * 1000)})
    assert await schedules.fire_due_schedules(due) == []
    assert len(await jobs(engine_redis, settings, "reports")) == 1
    assert (await schedules.get(schedule.id)).nextRunAt == "2024-01-15T09:10:00.000Z"


async def test_missed_runs_collapse_into_one_and_deleted_schedules_stay_quiet(
        engine_redis: aioredis.Redis, make_settings: Callable[..., Settings]) -> None:
    settings = make_settings(timezone="Europe/Berlin")
    schedules = Schedules(settings, engine_redis)
    daily = await schedules.create(ScheduleData(companyId="comp_2", reportType="monthly", cron="0 8 * * *",
                                                userId="u_1"), now=T0)
    assert daily.nextRunAt == "2024-01-16T07:00:00.000Z"  # 08:00 in Berlin (UTC+1 in January)
    gone = await schedules.create(SCHEDULE, now=T0)
    assert await schedules.delete(gone.id)
    later = datetime(2024, 1, 20, 12, 0, tzinfo=UTC)  # five days of missed runs
    assert len(await schedules.fire_due_schedules(later)) == 1
    assert await schedules.fire_due_schedules(later) == []
    assert (await schedules.get(daily.id)).nextRunAt == "2024-01-21T07:00:00.000Z"
    assert [s.id for s in await schedules.list()] == [daily.id]
    (job,) = await jobs(engine_redis, settings, "reports")
    assert "emailTo" not in job.data and job.data["reportType"] == "monthly"
