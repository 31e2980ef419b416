"""Tracing, when it is on: the one door the engine, the processors and the API go through.

Off (OTEL_TRACES_EXPORTER unset or `none`, the default), every call here returns a
shared do-nothing object and no tracing code is loaded (neither `streams.otel` nor the
SDK's tracing): the cost is a global lookup per call, made once per add, per job run or
per fast-path batch. On, `setup`
imports `streams.otel` (the optional extra `tgjobs[otel]`) and every call goes to it.

The W3C `traceparent` of the span that added a job travels with the job (a recorded
job's record field, a stream-kept job's entry field), so the worker's span for the
job continues the producer's trace.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from config import Settings, SettingsError

if TYPE_CHECKING:
    from streams.otel import OtelTracing
    from streams.delivery import Delivery

TRACEPARENT = "traceparent"  # the field a job's trace context travels in (record or entry)
OUTCOME = "tgjobs.outcome"  # a run span's attribute: completed, retry, dead or discarded


class NoSpan:
    """What every span call gives while tracing is off: a context manager that does nothing."""

    __slots__ = ()

    def __enter__(self) -> NoSpan:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def event(self, name: str, attributes: Mapping[str, Any] | None = None) -> None:
        """A span event (a retry, a dead letter)."""

    def set(self, name: str, value: Any) -> None:
        """A span attribute."""

    def fail(self, error: BaseException) -> None:
        """Records `error` on the span and marks it failed."""

    @property
    def traceparent(self) -> str:
        """The span's context as a W3C traceparent, to pass along; '' when off."""
        return ""


NO_SPAN = NoSpan()
_tracing: OtelTracing | None = None


def setup(settings: Settings) -> bool:
    """Turns tracing on as the settings say (the CLI calls it once per process, before
    logging is configured); True when it is on. OTEL_TRACES_EXPORTER set without the
    extra installed is a SettingsError naming the fix."""
    if settings.otel_traces_exporter in (None, "none"):
        return False
    try:
        from streams.otel import OtelTracing

        tracing = OtelTracing.from_settings(settings)
    except ImportError as exc:
        raise SettingsError(f"invalid setting OTEL_TRACES_EXPORTER: {settings.otel_traces_exporter} needs the "
                            f"otel extra (pip install 'tgjobs[otel]'): {exc}") from None
    install(tracing.as_global())
    return True


def install(tracing: OtelTracing | None) -> None:
    """Turns tracing on with `tracing` (None: off). Tests install one with an in-memory exporter."""
    global _tracing
    _tracing = tracing


def enabled() -> bool:
    return _tracing is not None


def adding(queue: str, count: int) -> NoSpan:
    """The producer's span for adding `count` jobs to `queue` (its traceparent goes with them)."""
    return NO_SPAN if _tracing is None else _tracing.adding(queue, count)


def job_run(queue: str, delivery: Delivery) -> NoSpan:
    """The worker's span for one run of a recorded job, a child of the span that added it."""
    return NO_SPAN if _tracing is None else _tracing.job_run(queue, delivery)


def batch_run(queue: str, deliveries: Sequence[Delivery]) -> NoSpan:
    """The worker's one span for a fast-path batch."""
    return NO_SPAN if _tracing is None else _tracing.batch_run(queue, deliveries)


def span(name: str, attributes: Mapping[str, Any], kind: str = "internal") -> NoSpan:
    """A span of the current trace: an SMTP send, a processor's batch. kind: internal or client."""
    return NO_SPAN if _tracing is None else _tracing.span(name, kind, attributes)


def server_span(method: str, route: str, headers: Mapping[str, str]) -> NoSpan:
    """The API's span for one request, continuing the caller's `traceparent` header."""
    return NO_SPAN if _tracing is None else _tracing.server_span(method, route, headers)


def http_trace_configs() -> list[Any]:
    """aiohttp TraceConfigs for a client session: a span per outbound request ([] when off)."""
    return [] if _tracing is None else [_tracing.http_trace_config()]


def current_ids() -> tuple[str, str] | None:
    """(trace id, span id) in hex of the span active here, for log lines; None without one."""
    return None if _tracing is None else _tracing.current_ids()


def failure_span_events(span: NoSpan, outcome: str, error: BaseException, backoff: float,
                        job_id: str | None = None) -> None:
    """A failed run's retry (with its backoff) or dead letter, as an event of `span`."""
    if span is NO_SPAN or outcome not in ("retry", "dead"):
        return
    attributes: dict[str, Any] = {"exception.type": type(error).__name__, "exception.message": str(error)}
    if job_id is not None:
        attributes["tgjobs.job.id"] = job_id
    if outcome == "retry":
        span.event("retry", {**attributes, "tgjobs.backoff_s": backoff})
    else:
        span.event("dead_letter", attributes)


@contextmanager
def installed(tracing: OtelTracing) -> Iterator[OtelTracing]:
    """`tracing` on for the block, then off again (tests)."""
    install(tracing)
    try:
        yield tracing
    finally:
        install(None)
        tracing.shutdown()
