"""Tracing with the OpenTelemetry SDK (the optional extra `tgjobs[otel]`): imported by
`streams.tracing.setup` only when OTEL_TRACES_EXPORTER names an exporter.

Spans: `add <queue>` (producer), `run <queue>` (one run of a recorded job, a child of
the span that added it), `batch <queue>` (one fast-path batch: a child of its entries'
producer span when they all share one, else linked to each), an HTTP client span per
outbound request (aiohttp), and the API's server span per request (continuing an
incoming `traceparent`). The SDK reads its own standard variables (OTEL_TRACES_SAMPLER,
OTEL_EXPORTER_OTLP_ENDPOINT, OTEL_RESOURCE_ATTRIBUTES...); tgjobs chooses the exporter
and the service name from the settings.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from contextlib import AbstractContextManager
from types import SimpleNamespace
from typing import Any

import aiohttp
from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.sdk.resources import SERVICE_NAME, Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor, SpanExporter
from opentelemetry.trace import Link, SpanKind, Status, StatusCode
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from config import Settings
from streams.metrics import entry_age
from streams.delivery import Delivery
from streams.tracing import TRACEPARENT, NoSpan

KINDS = {"internal": SpanKind.INTERNAL, "client": SpanKind.CLIENT}
MAX_LINKS = 64  # a batch links at most this many distinct producer spans


class LiveSpan(NoSpan):
    """A span of the SDK, current while the `with` block runs."""

    __slots__ = ("_manager", "_propagator", "span")

    def __init__(self, manager: AbstractContextManager[trace.Span], propagator: TraceContextTextMapPropagator) -> None:
        self._manager = manager
        self._propagator = propagator
        self.span: trace.Span = trace.INVALID_SPAN

    def __enter__(self) -> LiveSpan:
        self.span = self._manager.__enter__()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._manager.__exit__(*exc)

    def event(self, name: str, attributes: Mapping[str, Any] | None = None) -> None:
        self.span.add_event(name, dict(attributes or {}))

    def set(self, name: str, value: Any) -> None:
        self.span.set_attribute(name, value)

    def fail(self, error: BaseException) -> None:
        self.span.record_exception(error)
        self.span.set_status(Status(StatusCode.ERROR, f"{type(error).__name__}: {error}"))

    @property
    def traceparent(self) -> str:
        carrier: dict[str, str] = {}
        self._propagator.inject(carrier, context=trace.set_span_in_context(self.span))
        return carrier.get(TRACEPARENT, "")


class OtelTracing:
    def __init__(self, provider: TracerProvider) -> None:
        self.provider = provider
        self.tracer = provider.get_tracer("tgjobs")
        self.propagator = TraceContextTextMapPropagator()

    @classmethod
    def from_settings(cls, settings: Settings, exporter: SpanExporter | None = None) -> OtelTracing:
        """A provider for the settings' service name, exporting through `exporter` (each
        span as it ends), or else the one OTEL_TRACES_EXPORTER names (otlp: in batches)."""
        provider = TracerProvider(resource=Resource.create({SERVICE_NAME: settings.otel_service_name}))
        if exporter is not None:
            provider.add_span_processor(SimpleSpanProcessor(exporter))
        elif settings.otel_traces_exporter == "console":
            from opentelemetry.sdk.trace.export import ConsoleSpanExporter

            provider.add_span_processor(SimpleSpanProcessor(ConsoleSpanExporter()))
        else:
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

            provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
        return cls(provider)

    def as_global(self) -> OtelTracing:
        """Makes this provider OpenTelemetry's global one, so spans a handler starts with
        `opentelemetry.trace.get_tracer(...)` land in the same traces."""
        trace.set_tracer_provider(self.provider)
        return self

    def shutdown(self) -> None:
        self.provider.shutdown()

    def _start(self, name: str, kind: SpanKind, attributes: Mapping[str, Any], context: Context | None = None,
               links: Sequence[Link] = ()) -> LiveSpan:
        return LiveSpan(self.tracer.start_as_current_span(name, context=context, kind=kind,
                                                          attributes=attributes, links=links), self.propagator)

    def _context(self, traceparent: str | None) -> Context | None:
        return self.propagator.extract({TRACEPARENT: traceparent}) if traceparent else None

    def adding(self, queue: str, count: int) -> LiveSpan:
        return self._start(f"add {queue}", SpanKind.PRODUCER, {"tgjobs.queue": queue, "tgjobs.jobs": count})

    def job_run(self, queue: str, d: Delivery) -> LiveSpan:
        attributes: dict[str, Any] = {"tgjobs.queue": queue, "tgjobs.job.id": d.job_id,
                                      "tgjobs.attempt": d.attempts_made + 1, "tgjobs.entry.id": d.entry_id}
        if d.delivery == 1 and d.attempts_made == 0 and d.stalls == 0:
            wait = entry_age(d.entry_id)
            if wait is not None:
                attributes["tgjobs.queue_wait_ms"] = round(wait * 1000, 3)
        return self._start(f"run {queue}", SpanKind.CONSUMER, attributes, self._context(d.traceparent))

    def batch_run(self, queue: str, deliveries: Sequence[Delivery]) -> LiveSpan:
        parents = list(dict.fromkeys(d.traceparent for d in deliveries if d.traceparent))
        oldest: dict[int, str] = {}  # per lane, its first new entry: ids grow within a lane
        for d in deliveries:
            if d.delivery == 1 and d.lane not in oldest:
                oldest[d.lane] = d.entry_id
        waits = [age for entry_id in oldest.values() if (age := entry_age(entry_id)) is not None]
        attributes: dict[str, Any] = {"tgjobs.queue": queue, "tgjobs.batch.entries": len(deliveries)}
        if waits:
            attributes["tgjobs.queue_wait_ms.max"] = round(max(waits) * 1000, 3)
        if len(parents) == 1:  # one publish call's entries: the batch continues its trace
            return self._start(f"batch {queue}", SpanKind.CONSUMER, attributes, self._context(parents[0]))
        links = [Link(trace.get_current_span(self._context(tp)).get_span_context()) for tp in parents[:MAX_LINKS]]
        return self._start(f"batch {queue}", SpanKind.CONSUMER, attributes, Context(),
                           [link for link in links if link.context.is_valid])

    def span(self, name: str, kind: str, attributes: Mapping[str, Any]) -> LiveSpan:
        return self._start(name, KINDS[kind], attributes)

    def server_span(self, method: str, route: str, headers: Mapping[str, str]) -> LiveSpan:
        return self._start(f"{method} {route}", SpanKind.SERVER,
                           {"http.request.method": method, "http.route": route},
                           self.propagator.extract(headers))

    def current_ids(self) -> tuple[str, str] | None:
        context = trace.get_current_span().get_span_context()
        if not context.is_valid:
            return None
        return trace.format_trace_id(context.trace_id), trace.format_span_id(context.span_id)

    def http_trace_config(self) -> aiohttp.TraceConfig:
        """A client span per request of the session, its traceparent sent along; the
        URL is recorded without its query string or credentials (they may hold keys)."""
        config = aiohttp.TraceConfig()
        tracer, propagator = self.tracer, self.propagator

        async def started(_: aiohttp.ClientSession, ctx: SimpleNamespace, params: aiohttp.TraceRequestStartParams) -> None:
            url = params.url
            ctx.span = tracer.start_span(params.method, kind=SpanKind.CLIENT, attributes={
                "http.request.method": params.method, "server.address": url.host or "",
                "server.port": url.port or 0, "url.full": str(url.with_user(None).with_query(None))})
            propagator.inject(params.headers, context=trace.set_span_in_context(ctx.span))

        async def ended(_: aiohttp.ClientSession, ctx: SimpleNamespace, params: aiohttp.TraceRequestEndParams) -> None:
            status = params.response.status
            ctx.span.set_attribute("http.response.status_code", status)
            if status >= 400:
                ctx.span.set_status(Status(StatusCode.ERROR, f"HTTP {status}"))
            ctx.span.end()

        async def failed(_: aiohttp.ClientSession, ctx: SimpleNamespace,
                         params: aiohttp.TraceRequestExceptionParams) -> None:
            ctx.span.record_exception(params.exception)
            ctx.span.set_status(Status(StatusCode.ERROR, type(params.exception).__name__))
            ctx.span.end()

        config.on_request_start.append(started)
        config.on_request_end.append(ended)
        config.on_request_exception.append(failed)
        return config
