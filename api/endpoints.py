"""The route table: every endpoint with its handler, the role it needs, and the models
of its query, body and answers. The app registers routes from it, the auth
middleware reads roles from it, and api.openapi writes the document from it.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from aiohttp import web
from pydantic import BaseModel

from api.routes import dashboard, events, jobs, metrics, ops, queues, records, signals, sink
from api.ops_schemas import (AuditPage, DeadLetterPage, Health, PurgeResult, Readiness, ReplayResult, StreamsOverview,
                             WorkersOverview)
from api.record_schemas import (CompanyView, ContactView, ReportView, ResearchView, ScheduleDeleted, ScheduleList,
                                ScheduleQuery, ScheduleView, SignalsAccepted, SignalsQuery)
from api.sink_schemas import SinkDeadLetterPage, SinkDeadLetterRequest, SinkPurgeResult, SinkReplayResult
from api.schemas import (JOB_REQUESTS, QUEUE_ACTIONS, BulkRemoveQuery, BulkRemoveResult, CleanResult, DeadLetterRequest,
                         JobActionQuery, JobActionResult, JobCreated, JobDetailView, JobsOverview, PageQuery,
                         PauseResult, QueueQuery, QueueView)
from api.tokens import Role
from processors.models import ScheduleData, SignalData

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

# Errors most endpoints can give: no or a bad token, a role too low (or a foreign
# Origin), a Host not answered for, Redis away.
GUARDED = (401, 403, 421, 503)
# And those that change something: a body that is not JSON (api.guard).
CHANGING = (415, *GUARDED)


@dataclass(frozen=True, slots=True)
class Endpoint:
    method: str
    path: str
    handler: Handler
    summary: str
    tag: str
    role: Role | None  # None: open to anyone
    responses: dict[int, Any]  # status -> answer type (a model, or a union of models)
    errors: tuple[int, ...] = ()  # statuses answered with an ErrorBody
    query: type[BaseModel] | None = None
    body: Any = None  # the request body's type: a model, or a union discriminated by a field
    discriminator: str | None = None
    notes: str = ""
    media_type: str = "application/json"  # of the answers in `responses` (errors are always JSON)


ENDPOINTS: tuple[Endpoint, ...] = (
    Endpoint("POST", "/api/jobs", jobs.create_job, "Add a job", "jobs", Role.PRODUCER,
             {201: JobCreated, 200: JobCreated}, (400, 404, 413, 422, *CHANGING),
             body=tuple(JOB_REQUESTS.values()), discriminator="type",
             notes="`data` is validated by the type's model; 200 when an Idempotency-Key named a job "
                   "added before (that job is answered)."),
    Endpoint("POST", "/api/signals", signals.ingest_signals, "Ingest signals: one, a JSON array or NDJSON", "jobs",
             Role.PRODUCER, {202: SignalsAccepted}, (400, 413, 422, *CHANGING), query=SignalsQuery,
             body=SignalData | list[SignalData],
             notes="One Redis pipeline per request; at most API_MAX_SIGNALS items (default 1000). NDJSON with "
                   "Content-Type application/x-ndjson. An invalid item: 422 listing every failing item by index "
                   "and nothing written; with ?partial=true the valid items are written and the invalid listed."),
    Endpoint("GET", "/api/jobs", jobs.jobs_overview, "Counts of every queue", "jobs", Role.VIEWER,
             {200: JobsOverview}, GUARDED),
    Endpoint("GET", "/api/jobs/{jobId}", jobs.get_job, "One job, with its log", "jobs", Role.VIEWER,
             {200: JobDetailView}, (404, *GUARDED)),
    Endpoint("DELETE", "/api/jobs/{jobId}", jobs.delete_job, "Remove or retry a job", "jobs", Role.ADMIN,
             {200: JobActionResult}, (400, 404, 409, 422, *GUARDED), query=JobActionQuery,
             notes="remove: any job but an active one; retry: failed jobs only (409 otherwise)."),
    Endpoint("GET", "/api/queues/{queueName}", queues.get_queue, "A queue's figures, and its jobs", "queues",
             Role.VIEWER, {200: QueueView}, (404, 422, *GUARDED), query=QueueQuery),
    Endpoint("POST", "/api/queues/{queueName}", queues.manage_queue, "Pause, resume or clean a queue", "queues",
             Role.ADMIN, {200: PauseResult | CleanResult}, (400, 404, 413, 422, *CHANGING),
             body=tuple(QUEUE_ACTIONS.values()), discriminator="action"),
    Endpoint("DELETE", "/api/queues/{queueName}", queues.remove_jobs, "Remove jobs by id or by state", "queues",
             Role.ADMIN, {200: BulkRemoveResult}, (404, 422, *GUARDED), query=BulkRemoveQuery),
    Endpoint("GET", "/api/queues/{queueName}/dead", queues.dead_letters, "A queue's dead letters", "dead letters",
             Role.VIEWER, {200: DeadLetterPage}, (404, 422, *GUARDED), query=PageQuery),
    Endpoint("POST", "/api/queues/{queueName}/dead", queues.manage_dead_letters, "Replay or purge dead letters",
             "dead letters", Role.ADMIN, {200: ReplayResult | PurgeResult}, (400, 404, 413, 422, *CHANGING),
             body=DeadLetterRequest),
    Endpoint("GET", "/api/sink/dead", sink.sink_dead_letters, "Rows PostgreSQL rejected, with its reason",
             "dead letters", Role.VIEWER, {200: SinkDeadLetterPage}, (422, *GUARDED), query=PageQuery),
    Endpoint("POST", "/api/sink/dead", sink.manage_sink_dead_letters, "Replay or purge rows PostgreSQL rejected",
             "dead letters", Role.ADMIN, {200: SinkReplayResult | SinkPurgeResult}, (400, 413, 422, *GUARDED),
             body=SinkDeadLetterRequest,
             notes="replay puts each row back into its company's outbox; the sink writes it again."),
    Endpoint("GET", "/api/companies/{companyId}", records.get_company, "A company: analytics, intent, research, "
             "contacts", "records", Role.VIEWER, {200: CompanyView}, (404, *GUARDED),
             notes="Analytics cover the last 30 local days (TIMEZONE); 404 when nothing of the company is stored."),
    Endpoint("GET", "/api/contacts/{contactId}", records.get_contact, "An enriched contact", "records", Role.VIEWER,
             {200: ContactView}, (404, *GUARDED)),
    Endpoint("GET", "/api/research/{researchId}", records.get_research, "A research brief", "records", Role.VIEWER,
             {200: ResearchView}, (404, *GUARDED)),
    Endpoint("GET", "/api/reports/{reportId}", records.get_report, "A report", "records", Role.VIEWER,
             {200: ReportView}, (404, *GUARDED),
             notes="JSON; the report's HTML page (text/html) when Accept ranks text/html above application/json."),
    Endpoint("POST", "/api/schedules", records.create_schedule, "Schedule a report", "schedules", Role.PRODUCER,
             {201: ScheduleView}, (400, 413, 422, *CHANGING), body=ScheduleData,
             notes="`cron` has five fields (or @daily, @weekly...) and is evaluated in TIMEZONE; each due time "
                   "enqueues one reports job, however many workers run."),
    Endpoint("GET", "/api/schedules", records.list_schedules, "Report schedules", "schedules", Role.VIEWER,
             {200: ScheduleList}, (422, *GUARDED), query=ScheduleQuery),
    Endpoint("DELETE", "/api/schedules/{scheduleId}", records.delete_schedule, "Delete a report schedule",
             "schedules", Role.ADMIN, {200: ScheduleDeleted}, (404, *GUARDED)),
    Endpoint("GET", "/api/streams", ops.streams_overview, "Streams, consumer groups and consumers", "operations",
             Role.VIEWER, {200: StreamsOverview}, GUARDED),
    Endpoint("GET", "/api/workers", ops.live_workers, "Live worker processes (heartbeat not expired)", "operations",
             Role.VIEWER, {200: WorkersOverview}, GUARDED),
    Endpoint("GET", "/api/audit", ops.audit_trail, "The audit trail, newest first", "operations", Role.VIEWER,
             {200: AuditPage}, (422, *GUARDED), query=PageQuery),
    Endpoint("GET", "/api/events", events.live_events, "Live events of every queue (server-sent events)",
             "operations", Role.VIEWER, {200: str}, (429, *GUARDED), media_type="text/event-stream",
             notes="Never ends: from the present on, each queue's events as `id: <entry id>` `event: job` "
                   "`data: {\"queue\", \"event\", \"job\", ...the entry's other fields}`; `event: figures` "
                   "with the GET /api/jobs overview at connect and after events (at most every 2 s); "
                   "`: keep-alive` after 15 s of quiet. Entry ids are per queue stream: a reconnect starts "
                   "at the present. 429 when the token has API_EVENTS_PER_TOKEN (8) streams open, 503 when 64 "
                   "are open in all."),
    Endpoint("GET", "/healthz", ops.healthz, "The process is up", "operations", None, {200: Health}),
    Endpoint("GET", "/readyz", ops.readyz, "Redis is reachable and holds the scripts", "operations", None,
             {200: Readiness, 503: Readiness}),
    Endpoint("GET", "/metrics", metrics.metrics, "Queue figures for Prometheus", "operations", Role.VIEWER,
             {200: str}, GUARDED, media_type="text/plain",
             notes="Prometheus text format, read from Redis at scrape time: jobs by state, stream length, group "
                   "lag and pending, dead letters, live workers, Redis memory; then this process's own figures."),
    Endpoint("GET", "/", dashboard.dashboard_page, "The live dashboard page", "operations", None,
             {200: str}, media_type="text/html",
             notes="Static HTML; its script (under /static/) reads the API with the token entered on the page."),
    Endpoint("GET", "/api/openapi.json", ops.openapi_document, "This document", "operations", None,
             {200: dict[str, Any]}),
)
