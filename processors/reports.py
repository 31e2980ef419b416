"""The reports processor: figures for the last complete ISO week, month or quarter in the
configured time zone beside the period before (signals by type and day, engaged contacts,
intent trend, research done), insights and recommendations by explicit rules, stored as
JSON and as an HTML page, then e-mailed when asked. Registered for the `reports` queue.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from jinja2 import Environment, PackageLoader, select_autoescape
from redis.asyncio import Redis

from config import Settings
from processors.analysis import percent_change
from processors.mail import Mailer
from processors.models import ReportData, parse_job_data, record_id
from processors.periods import Period, iso_instant, last_complete, now_ms, period_containing
from processors.signal_figures import DayFigures, decayed
from processors.store import Store
from streams import JobContext

STEADY_WITHIN_PCT = 10.0  # smaller changes read as "steady"
DROP_ALERT_PCT = -25.0  # a fall in signals this steep asks for a review
RISING_INTENT_PCT = 50.0
MANY_CONTACTS = 3  # engaged contacts from which "multi-threading" the account is suggested
CHART_WIDTH, CHART_HEIGHT, CHART_PAD = 640, 180, 24

_templates = Environment(loader=PackageLoader("processors", "templates"),
                         autoescape=select_autoescape(["html"]), trim_blocks=True, lstrip_blocks=True)


@dataclass(frozen=True, slots=True)
class Figures:
    """One period's numbers."""

    by_type: dict[str, int]
    by_day: list[tuple[date, int]]
    engaged: int
    intent_end: float | None  # None: no score known as of the period's end
    research: int

    @property
    def total(self) -> int:
        return sum(self.by_type.values())


class ReportProcessor:
    def __init__(self, settings: Settings, redis: Redis, *, mailer: Mailer | None = None) -> None:
        self.settings = settings
        self.store = Store(redis, settings)
        self.mailer = mailer or (Mailer(settings) if settings.smtp_configured else None)

    async def handle(self, ctx: JobContext) -> dict[str, Any]:
        job = parse_job_data(ReportData, ctx.data)
        report_id = record_id("rep", ctx.id)
        zone = self.settings.zone
        earlier = await self.store.report_record(job.companyId, report_id)
        if earlier is not None and earlier["email"]["status"] == "sent":
            return _summary(earlier)  # a rerun after the send: never mail twice
        # A rerun keeps the first run's period, even when it now starts in a later week.
        period = (period_containing(job.reportType, date.fromisoformat(earlier["periodStart"])) if earlier
                  else last_complete(job.reportType, datetime.now(zone), zone))
        previous = period.previous()

        await ctx.progress(20)
        current_figures, previous_figures = await self._figures(job.companyId, period, previous)
        profile = await self.store.profile(job.companyId)
        company = profile.get("companyName") or job.companyId

        await ctx.progress(50)
        metrics = _metrics(current_figures, previous_figures, self.settings.intent_threshold)
        insights = _insights(current_figures, previous_figures, self.settings.intent_threshold)
        actions = _recommendations(company, current_figures, previous_figures, self.settings)
        now = now_ms()
        record = {
            "reportId": report_id,
            "jobId": ctx.id,
            "companyId": job.companyId,
            "companyName": profile.get("companyName"),
            "reportType": job.reportType,
            "userId": job.userId,
            "timezone": self.settings.timezone,
            "periodStart": period.start.isoformat(),
            "periodEnd": period.end.isoformat(),
            "previousStart": previous.start.isoformat(),
            "previousEnd": previous.end.isoformat(),
            "metrics": metrics,
            "insights": insights,
            "recommendations": actions,
            "email": self._email_state(job.emailTo),
            "generatedAt": iso_instant(now),
        }
        context = {"r": record, "company": company, "chart": _chart(current_figures.by_day)}
        html = _templates.get_template("report.html").render(context)

        await ctx.progress(70)
        await self.store.save_report(record, html, now)  # stored before sending
        if record["email"]["status"] == "pending":
            assert self.mailer is not None and job.emailTo is not None
            await self.mailer.send(
                to=[job.emailTo], subject=_subject(company, record), html=html,
                text=_templates.get_template("report.txt").render(context), message_id=report_id)
            record["email"] = {**record["email"], "status": "sent", "sentAt": iso_instant(now_ms())}
            await self.store.update_report(job.companyId, report_id, email=record["email"])
        await ctx.progress(100)
        return _summary(record)

    def _email_state(self, to: str | None) -> dict[str, Any]:
        if to is None:
            return {"to": None, "status": "not requested"}
        if self.mailer is None:
            return {"to": to, "status": "unavailable", "reason": "SMTP is not configured (SMTP_HOST)"}
        return {"to": to, "status": "pending"}

    async def _figures(self, company_id: str, period: Period, previous: Period) -> tuple[Figures, Figures]:
        """(this period's figures, the previous period's)."""
        days = await self.store.days(company_id, previous.days + period.days)
        split = len(previous.days)
        state = await self.store.intent_state(company_id)
        before = await self._period_figures(company_id, previous, days[:split], days[:split], state)
        now = await self._period_figures(company_id, period, days[split:], days, state)
        return now, before

    async def _period_figures(self, company_id: str, period: Period, own: list[DayFigures],
                              up_to_end: list[DayFigures], state: tuple[float, int] | None) -> Figures:
        zone = self.settings.zone
        start, end = period.start_ms(zone), period.end_ms(zone)
        return Figures(
            by_type=_sum(own),
            by_day=[(f.day, f.total) for f in own],
            engaged=len(await self.store.engaged_contacts(company_id, period.days)),
            intent_end=self._intent_at(up_to_end, end, state),
            research=await self.store.research_count(company_id, start, end),
        )

    def _intent_at(self, days: list[DayFigures], at_ms: int, state: tuple[float, int] | None) -> float | None:
        """The score as of `at_ms`: the newest snapshot up to then, decayed to `at_ms`.
        Without a snapshot in the window, the stored score serves if it is not newer."""
        snapshot = next((f.intent for f in reversed(days) if f.intent is not None), None)
        if snapshot is None and state is not None and state[1] <= at_ms:
            snapshot = state
        if snapshot is None:
            return None
        return round(decayed(snapshot[0], snapshot[1], at_ms, self.settings.intent_half_life), 3)


def _sum(days: list[DayFigures]) -> dict[str, int]:
    total: dict[str, int] = {}
    for figure in days:
        for name, count in figure.counts.items():
            total[name] = total.get(name, 0) + count
    return total


def _metrics(now: Figures, before: Figures, threshold: float) -> dict[str, Any]:
    types = sorted(set(now.by_type) | set(before.by_type))
    return {
        "signals": {
            "total": now.total, "previousTotal": before.total, "changePct": percent_change(now.total, before.total),
            "byType": {t: {"count": now.by_type.get(t, 0), "previous": before.by_type.get(t, 0),
                           "changePct": percent_change(now.by_type.get(t, 0), before.by_type.get(t, 0))}
                       for t in types},
            "byDay": [{"date": d.isoformat(), "count": n} for d, n in now.by_day],
        },
        "engagedContacts": {"count": now.engaged, "previous": before.engaged,
                            "changePct": percent_change(now.engaged, before.engaged)},
        "intent": {"start": before.intent_end, "end": now.intent_end, "threshold": threshold,
                   "changePct": percent_change(now.intent_end, before.intent_end)
                   if now.intent_end is not None and before.intent_end else None},
        "research": {"count": now.research, "previous": before.research},
    }


def _insights(now: Figures, before: Figures, threshold: float) -> list[str]:
    lines = []
    change = percent_change(now.total, before.total)
    if now.total == before.total == 0:
        lines.append("No signals in this period or the one before.")
    elif change is None:
        lines.append(f"{now.total} signals this period; none in the period before.")
    elif abs(change) < STEADY_WITHIN_PCT:
        lines.append(f"Signals held steady: {now.total} against {before.total} ({change:+.0f}%).")
    else:
        lines.append(f"Signals {'rose' if change > 0 else 'fell'} {abs(change):.0f}%: "
                     f"{now.total} against {before.total}.")
    deltas = {t: now.by_type.get(t, 0) - before.by_type.get(t, 0) for t in set(now.by_type) | set(before.by_type)}
    if deltas:
        up = max(deltas.items(), key=lambda kv: (kv[1], kv[0]))
        down = min(deltas.items(), key=lambda kv: (kv[1], kv[0]))
        if up[1] > 0:
            lines.append(f"Largest increase: {up[0]} (+{up[1]}).")
        if down[1] < 0:
            lines.append(f"Largest decrease: {down[0]} ({down[1]}).")
    if now.total:
        day, count = max(now.by_day, key=lambda dc: (dc[1], dc[0]))
        lines.append(f"Busiest day: {day.isoformat()} with {count} signals.")
    if now.engaged or before.engaged:
        lines.append(f"Engaged contacts: {now.engaged} (previous period: {before.engaged}).")
    if now.intent_end is not None:
        start = f"{before.intent_end:.1f}" if before.intent_end is not None else "none"
        side = "at or above" if now.intent_end >= threshold else "below"
        lines.append(f"Intent score {now.intent_end:.1f} at the period's end (start: {start}), "
                     f"{side} the threshold of {threshold:g}.")
    lines.append(f"Research briefs generated: {now.research} (previous period: {before.research}).")
    return lines


def _recommendations(company: str, now: Figures, before: Figures, settings: Settings) -> list[str]:
    actions = []
    threshold = settings.intent_threshold
    if now.intent_end is not None and now.intent_end >= threshold and now.research == 0:
        actions.append(f"Intent is above the threshold but no research was done this period: "
                       f"run research on {company}.")
    strongest = max(settings.signal_weights.values(), default=0) / 2
    strong = {t: n for t, n in now.by_type.items() if n and settings.signal_weights.get(t, 0) >= strongest}
    if strong:
        listed = ", ".join(f"{n} {t}" for t, n in sorted(strong.items(), key=lambda kv: -kv[1]))
        actions.append(f"Follow up on the high-intent signals ({listed}).")
    change = percent_change(now.total, before.total)
    if now.total == 0:
        actions.append("No signals this period: check that tracking reaches this account, or re-engage it.")
    elif change is not None and change <= DROP_ALERT_PCT:
        actions.append(f"Signals fell {abs(change):.0f}%: review the outreach cadence for this account.")
    if now.engaged >= MANY_CONTACTS and now.engaged > before.engaged:
        actions.append(f"{now.engaged} contacts engaged (previous period: {before.engaged}): "
                       "map the buying group and reach them together.")
    if now.intent_end is not None and before.intent_end:
        rise = percent_change(now.intent_end, before.intent_end)
        if rise is not None and rise >= RISING_INTENT_PCT:
            actions.append(f"Intent rose {rise:.0f}% over the period: prioritise this account.")
    return actions


def _chart(by_day: list[tuple[date, int]]) -> dict[str, Any]:
    """Bar geometry for the inline SVG of signals per day."""
    top = max((n for _, n in by_day), default=0) or 1
    inner_w, inner_h = CHART_WIDTH - 2 * CHART_PAD, CHART_HEIGHT - 2 * CHART_PAD
    step = inner_w / max(len(by_day), 1)
    bars = []
    for i, (day, count) in enumerate(by_day):
        height = inner_h * count / top
        bars.append({"x": round(CHART_PAD + i * step + step * 0.1, 2), "width": round(step * 0.8, 2),
                     "y": round(CHART_PAD + inner_h - height, 2), "height": round(height, 2),
                     "date": day.isoformat(), "count": count})
    labels = [bars[i] for i in sorted({0, len(bars) // 2, len(bars) - 1})] if bars else []
    return {"width": CHART_WIDTH, "height": CHART_HEIGHT, "pad": CHART_PAD, "max": top,
            "baseline": CHART_HEIGHT - CHART_PAD, "bars": bars, "labels": labels}


def _subject(company: str, record: dict[str, Any]) -> str:
    # One line whatever the company's name holds: a header value may not break (the
    # e-mail library refuses it, so such a report could never be sent).
    return (f"{' '.join(company.split())}: {record['reportType']} report, "
            f"{record['periodStart']} to {record['periodEnd']}")


def _summary(record: dict[str, Any]) -> dict[str, Any]:
    signals = record["metrics"]["signals"]
    return {"reportId": record["reportId"], "periodStart": record["periodStart"],
            "periodEnd": record["periodEnd"], "reportType": record["reportType"],
            "signals": signals["total"], "changePct": signals["changePct"],
            "emailed": record["email"]["status"] == "sent"}
