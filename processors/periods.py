"""Calendar arithmetic in the configured time zone: report periods (the last complete ISO
week, month or quarter before a moment, and the one before it), local days, and instants
as epoch milliseconds or ISO strings. Used by reports, signals, research and schedules.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from processors.models import ReportType

ONE_DAY = timedelta(days=1)


@dataclass(frozen=True, slots=True)
class Period:
    kind: ReportType
    start: date  # first day
    end: date  # last day, inclusive

    @property
    def days(self) -> list[date]:
        return [self.start + timedelta(days=n) for n in range((self.end - self.start).days + 1)]

    def start_ms(self, zone: ZoneInfo) -> int:
        """The instant the first day begins, local midnight."""
        return midnight_ms(self.start, zone)

    def end_ms(self, zone: ZoneInfo) -> int:
        """The instant after the last day ends (exclusive)."""
        return midnight_ms(self.end + ONE_DAY, zone)

    def previous(self) -> Period:
        return period_containing(self.kind, self.start - ONE_DAY)


def period_containing(kind: ReportType, day: date) -> Period:
    if kind == "weekly":
        start = day - timedelta(days=day.weekday())  # ISO weeks start on Monday
        return Period(kind, start, start + timedelta(days=6))
    first_month = day.month if kind == "monthly" else (day.month - 1) // 3 * 3 + 1
    start = date(day.year, first_month, 1)
    return Period(kind, start, _add_months(start, 1 if kind == "monthly" else 3) - ONE_DAY)


def last_complete(kind: ReportType, moment: datetime, zone: ZoneInfo) -> Period:
    """The newest period of `kind` that ended before `moment`, in `zone`'s calendar."""
    today = moment.astimezone(zone).date()
    return period_containing(kind, today).previous()


def _add_months(first: date, months: int) -> date:
    index = first.month - 1 + months
    return date(first.year + index // 12, index % 12 + 1, 1)


# -- days and instants -------------------------------------------------------------------

def now_ms() -> int:
    return int(datetime.now(UTC).timestamp() * 1000)


def midnight_ms(day: date, zone: ZoneInfo) -> int:
    return int(datetime.combine(day, time(0), tzinfo=zone).timestamp() * 1000)


def local_day(ms: int, zone: ZoneInfo) -> date:
    return datetime.fromtimestamp(ms / 1000, zone).date()


def iso_instant(ms: int) -> str:
    """UTC, millisecond precision: 2024-01-15T10:30:00.000Z."""
    seconds, millis = divmod(ms, 1000)
    # isoformat() is a third cheaper than strftime(); [:19] drops its "+00:00".
    return f"{datetime.fromtimestamp(seconds, UTC).isoformat()[:19]}.{millis:03d}Z"


class LocalDays:
    """The local day of an instant, and when that day ends, with the last day's bounds
    kept: the signals of a batch fall on one or two days, and working a day out from
    an instant is a fifth of what recording a signal costs."""

    __slots__ = ("zone", "_start", "_end", "_day")

    def __init__(self, zone: ZoneInfo) -> None:
        self.zone = zone
        self._start = self._end = 0
        self._day = date.min

    def of(self, ms: int) -> tuple[date, int]:
        """The local day holding `ms`, and the instant after it ends (epoch ms)."""
        if not self._start <= ms < self._end:
            day = local_day(ms, self.zone)
            self._day, self._start, self._end = day, midnight_ms(day, self.zone), midnight_ms(day + ONE_DAY, self.zone)
        return self._day, self._end


def parse_instant(value: Any) -> int | None:
    """Epoch ms from an ISO 8601 string (no offset means UTC) or epoch seconds; None
    when `value` is neither."""
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return int(value * 1000)
    if not isinstance(value, str):
        return None
    try:
        moment = datetime.fromisoformat(value.strip())
    except ValueError:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return int(moment.timestamp() * 1000)
