"""Tracing in a test: the SDK with an in-memory exporter, installed for one test (import
the fixture by name), and helpers to read the spans it kept."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from config import Settings
from streams import tracing
from streams.otel import OtelTracing


@pytest.fixture
def spans(make_settings: Callable[..., Settings]) -> Iterator[InMemorySpanExporter]:
    """Tracing on for the test, every span ended kept by the exporter it yields."""
    exporter = InMemorySpanExporter()
    with tracing.installed(OtelTracing.from_settings(make_settings(), exporter)):
        yield exporter


def named(exporter: InMemorySpanExporter, name: str) -> list[ReadableSpan]:
    return [span for span in exporter.get_finished_spans() if span.name == name]


def one(exporter: InMemorySpanExporter, name: str) -> ReadableSpan:
    found = named(exporter, name)
    assert len(found) == 1, [s.name for s in exporter.get_finished_spans()]
    return found[0]


def is_child(child: ReadableSpan, parent: ReadableSpan) -> bool:
    return (child.parent is not None and child.parent.span_id == parent.context.span_id
            and child.context.trace_id == parent.context.trace_id)


def attrs(span: ReadableSpan) -> dict[str, Any]:
    return dict(span.attributes or {})


def traceparent(trace_id: int, span_id: int) -> str:
    return f"00-{trace_id:032x}-{span_id:016x}-01"
