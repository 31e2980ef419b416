"""The data of each job type, as the seed defines it: one pydantic model per type.

The API validates request bodies with these models and the processors read job data
through them, so the contract is written once. Field names keep the seed's camelCase.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, TypeVar

from croniter import CroniterError, croniter
from pydantic import (AnyHttpUrl, BaseModel, ConfigDict, EmailStr, StringConstraints, ValidationError,
                      field_validator)

from streams import UnrecoverableError

CRON_FIELDS = 5
Priority = Literal["low", "normal", "high"]
ReportType = Literal["weekly", "monthly", "quarterly"]
Identifier = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]
Text = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=500)]
Domain = Annotated[str, StringConstraints(strip_whitespace=True, to_lower=True, min_length=3, max_length=253,
                                          pattern=r"^([A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z]{2,63}$")]


class JobData(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


class ResearchData(JobData):
    companyId: Identifier
    companyName: Text
    domain: Domain | None = None
    priority: Priority = "normal"
    userId: Identifier | None = None


class EnrichmentData(JobData):
    contactId: Identifier
    companyId: Identifier
    linkedinUrl: AnyHttpUrl | None = None
    email: EmailStr | None = None
    priority: Priority = "normal"


class ReportData(JobData):
    companyId: Identifier
    reportType: ReportType
    userId: Identifier
    emailTo: EmailStr | None = None
    priority: Priority = "normal"


class SignalData(JobData):
    signalId: Identifier
    signalType: Text  # checked against the configured signal types where it is processed
    companyId: Identifier
    data: dict[str, Any]
    priority: Priority = "normal"

    @field_validator("data")
    @classmethod
    def _bounded(cls, data: dict[str, Any]) -> dict[str, Any]:
        check_bounded(data)
        return data


MAX_DATA_DEPTH = 8  # objects and arrays nested in a signal's `data`, itself included
MAX_DATA_KEYS = 256  # keys of every object in a signal's `data`, all levels together


def check_bounded(data: dict[str, Any]) -> None:
    """ValueError when `data` nests deeper than MAX_DATA_DEPTH or holds more than
    MAX_DATA_KEYS keys in all (the size limit alone lets 64 KB hold thousands)."""
    keys = 0
    level: list[Any] = [data]
    for depth in range(1, MAX_DATA_DEPTH + 2):
        if not level:
            return
        if depth > MAX_DATA_DEPTH:
            raise ValueError(f"nested deeper than {MAX_DATA_DEPTH} levels")
        below: list[Any] = []
        for value in level:
            if isinstance(value, dict):
                keys += len(value)
                below.extend(value.values())
            else:
                below.extend(value)
        if keys > MAX_DATA_KEYS:
            raise ValueError(f"more than {MAX_DATA_KEYS} keys in all")
        level = [v for v in below if isinstance(v, (dict, list))]


class ScheduleData(JobData):
    """The body of POST /api/schedules: a report for a company on a cron schedule,
    evaluated in the configured TIMEZONE."""

    companyId: Identifier
    reportType: ReportType
    cron: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=100)]
    emailTo: EmailStr | None = None
    userId: Identifier

    @field_validator("cron")
    @classmethod
    def _check_cron(cls, expression: str) -> str:
        # Five fields (minute hour day month weekday) or a macro such as @daily; croniter's
        # optional sixth (seconds) field would fire far more often than any report needs.
        if not croniter.is_valid(expression) or len(expression.split()) > CRON_FIELDS:
            raise ValueError("must be a cron expression of five fields, e.g. '0 8 * * 1', or @daily/@weekly/@monthly")
        try:  # valid fields can still name no date at all ("0 0 30 2 *"): no next run to store
            croniter(expression).get_next(float)
        except CroniterError:
            raise ValueError("names no date that ever comes (e.g. 30 February)") from None
        return expression


# -- reading job data in a handler ---------------------------------------------------

M = TypeVar("M", bound=JobData)


def parse_job_data(model: type[M], data: Any) -> M:
    """The job's data as `model`; data that does not validate can never succeed, so the
    job is dead-lettered at once with the validation errors as its reason."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise UnrecoverableError(f"invalid {model.__name__}: {exc}") from None


def record_id(kind: str, job_id: str) -> str:
    """A record named after the job that writes it ("res_01JD..." for "research-01JD..."),
    so a rerun of the job rewrites its record instead of adding a second one."""
    return f"{kind}_{job_id.partition('-')[2] or job_id}"
