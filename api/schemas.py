"""The request and response models of the HTTP API. Handlers validate and answer with
these, and api.openapi builds the OpenAPI document from the same classes, so the two
cannot drift. Times are milliseconds inside and ISO 8601 (UTC, ms) on the wire.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, PlainSerializer, StringConstraints, WithJsonSchema, create_model

from processors.kinds import KINDS
from processors.models import JobData
from streams.figures import QueueStatus
from streams.job import Job, JobState
from streams.keys import JOB_ID_RE

MAX_PAGE = 1000  # largest `limit` of any listing
MAX_IDS = 1000  # most job ids one request may name
JOB_IDS_MAX_CHARS = 40_000  # of the jobIds query parameter: 1000 ids as this system makes them, with commas
MAX_CLEAN = 10_000  # most records one clean removes


def iso_ms(ms: int) -> str:
    """1705314300000 -> "2024-01-15T10:25:00.000Z" (what JavaScript's toISOString gives)."""
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


Timestamp = Annotated[int, PlainSerializer(iso_ms, return_type=str),
                      WithJsonSchema({"type": "string", "format": "date-time"}, mode="serialization")]
JobId = Annotated[str, StringConstraints(pattern=JOB_ID_RE.pattern)]
# A stream entry id. Redis takes each part up to 2^64-1: 19 digits keeps every id valid.
EntryId = Annotated[str, StringConstraints(pattern=r"^[0-9]{1,19}-[0-9]{1,19}$")]
ListingCursorText = Annotated[str, StringConstraints(pattern=r"^[a-z]{1,12}:[0-9]{1,16}:[0-9]{1,9}$")]
PageLimit = Annotated[int, Field(ge=1, le=MAX_PAGE)]


class Request(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Response(BaseModel):
    model_config = ConfigDict(extra="forbid")


# -- requests: POST /api/jobs ---------------------------------------------------------

class JobEnvelope(BaseModel):
    """What every job request has; checked first, so an unknown type can be a 404."""

    type: str
    data: dict[str, Any]


def _job_request(job_type: str, data_model: type[JobData]) -> type[Request]:
    name = data_model.__name__.removesuffix("Data") + "JobRequest"
    return create_model(name, __base__=Request, type=(Literal[job_type], ...),  # type: ignore[valid-type]
                        data=(data_model, ...))


JOB_REQUESTS: dict[str, type[Request]] = {kind.type: _job_request(kind.type, kind.model) for kind in KINDS}


# -- requests: queue and dead-letter actions --------------------------------------------

class ActionEnvelope(BaseModel):
    action: str


class PauseRequest(Request):
    action: Literal["pause"]


class ResumeRequest(Request):
    action: Literal["resume"]


class CleanOptions(Request):
    grace: int = Field(0, ge=0, description="only records finished more than this many ms ago")
    limit: int = Field(1000, ge=1, le=MAX_CLEAN, description="at most this many records")
    type: Literal["completed", "failed"] = "completed"


class CleanRequest(Request):
    action: Literal["clean"]
    options: CleanOptions = CleanOptions()


QUEUE_ACTIONS: dict[str, type[Request]] = {"pause": PauseRequest, "resume": ResumeRequest, "clean": CleanRequest}


class DeadLetterRequest(Request):
    action: Literal["replay", "purge"]
    ids: list[JobId] | None = Field(None, max_length=MAX_IDS, description="job ids; omitted: every dead letter")


DEAD_LETTER_ACTIONS = ("replay", "purge")


# -- requests: query strings ------------------------------------------------------------

class QueueQuery(Request):
    includeJobs: bool = False
    limit: PageLimit = 20
    status: JobState | None = Field(None, description="only jobs in this state; omitted: every state")
    cursor: ListingCursorText | None = Field(None, description="`nextCursor` of the previous page")


class JobActionQuery(Request):
    action: Literal["remove", "retry"] = "remove"


JOB_ACTIONS = ("remove", "retry")


class BulkRemoveQuery(Request):
    jobIds: str | None = Field(None, description="comma-separated job ids", max_length=JOB_IDS_MAX_CHARS,
                               pattern=r"^[A-Za-z0-9_, -]*$")
    status: Literal["waiting", "delayed", "paused", "completed", "failed"] | None = None


class PageQuery(Request):
    limit: PageLimit = 100
    cursor: EntryId | None = Field(None, description="`nextCursor` of the previous page")


# -- responses --------------------------------------------------------------------------

class JobCreated(Response):
    id: str
    queue: str
    status: JobState
    createdAt: Timestamp


class StateCounts(Response):
    waiting: int
    active: int
    delayed: int
    completed: int = Field(description="completed jobs retention keeps (at most the queue's keep_completed)")
    failed: int = Field(description="failed jobs retention keeps (at most the queue's keep_failed)")
    paused: int
    completedTotal: int = Field(description="runs completed since the queue began, whatever retention dropped")
    failedTotal: int = Field(description="jobs failed for good (dead-lettered) since the queue began")

    @classmethod
    def fields_of(cls, status: QueueStatus) -> dict[str, Any]:
        return {**status.counts, "completedTotal": status.completed_total, "failedTotal": status.failed_total}


class QueueCounts(StateCounts):
    dead: int
    lag: int | None = Field(description="entries the workers have not read yet; null when Redis cannot tell")


class JobsOverview(Response):
    totalJobs: int
    queues: dict[str, QueueCounts]
    timestamp: Timestamp

    @classmethod
    def of(cls, statuses: list[QueueStatus], now_ms: int) -> JobsOverview:
        return cls(totalJobs=sum(sum(s.counts.values()) for s in statuses),
                   queues={s.queue: QueueCounts(**QueueCounts.fields_of(s), dead=s.dead, lag=s.lag)
                           for s in statuses},
                   timestamp=now_ms)


class JobView(Response):
    id: str
    name: str
    queue: str
    status: JobState
    priority: str
    progress: Any
    attemptsMade: int
    maxAttempts: int
    duration: int | None = Field(description="ms from start to finish of the last run")
    createdAt: Timestamp | None
    processedAt: Timestamp | None
    finishedAt: Timestamp | None
    delayedUntil: Timestamp | None
    data: Any
    returnvalue: Any
    failedReason: str | None

    @classmethod
    def fields_of(cls, job: Job, status: JobState) -> dict[str, Any]:
        return dict(id=job.id, name=job.name, queue=job.queue, status=status, priority=job.lane,
                    progress=job.progress, attemptsMade=job.attemptsMade, maxAttempts=job.maxAttempts,
                    duration=job.duration, createdAt=job.createdAt, processedAt=job.processedAt,
                    finishedAt=job.finishedAt,
                    delayedUntil=job.dueAt if job.state is JobState.DELAYED else None,
                    data=job.data, returnvalue=job.returnvalue, failedReason=job.failedReason)

    @classmethod
    def of(cls, job: Job, status: JobState) -> JobView:
        return cls(**cls.fields_of(job, status))


class JobDetailView(JobView):
    logs: list[str]

    @classmethod
    def of_detail(cls, job: Job, status: JobState, logs: list[str]) -> JobDetailView:
        return cls(**cls.fields_of(job, status), logs=logs)


class JobActionResult(Response):
    id: str
    action: Literal["remove", "retry"]
    status: Literal["removed", "waiting"]


class QueueView(Response):
    name: str
    paused: bool
    counts: StateCounts
    dead: int
    length: int = Field(description="entries in the queue's lane streams")
    lag: int | None
    pending: int = Field(description="entries delivered to a worker and not yet acknowledged")
    jobs: list[JobView] | None = Field(None, description="with includeJobs=true")
    nextCursor: str | None = Field(None, description="with includeJobs=true; null on the last page")

    @classmethod
    def of(cls, status: QueueStatus) -> QueueView:
        return cls(name=status.queue, paused=status.paused, counts=StateCounts(**StateCounts.fields_of(status)),
                   dead=status.dead, length=status.length, lag=status.lag, pending=status.pending)


class PauseResult(Response):
    queue: str
    action: Literal["pause", "resume"]
    paused: bool


class CleanResult(Response):
    queue: str
    action: Literal["clean"]
    type: Literal["completed", "failed"]
    removed: int
    jobIds: list[str]


class BulkRemoveResult(Response):
    queue: str
    removed: list[str]
    notFound: list[str]
    active: list[str] = Field(description="running jobs, left to finish")
    more: bool = Field(description="with status: more jobs in that state remain; call again")


class ErrorDetail(Response):
    location: Literal["body", "query", "path", "header"]
    path: list[str | int] = Field(description="where in the location, e.g. [\"data\", \"email\"]")
    message: str


class ErrorBody(Response):
    error: str = Field(description="a stable code: bad_request, unauthorized, not_found, invalid...")
    message: str
    requestId: str
    details: list[ErrorDetail] | None = None
