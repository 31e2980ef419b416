"""The job kinds, each declared once: its type (as POST /api/jobs names it), queue, job
name, data model, handler factory and companion tasks. The API, the CLI and the workers
all read `KINDS`, which is checked against the default policy table when it is built.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Collection, Iterable, Iterator
from dataclasses import dataclass
from types import MappingProxyType

from redis.asyncio import Redis

from config import DEFAULT_POLICIES, Settings
from processors.models import EnrichmentData, JobData, ReportData, ResearchData, SignalData
from streams import Handler
from streams.keeping import keeps_records

HandlerFactory = Callable[[Settings, Redis], Handler]
"""Builds a queue's handler; `redis` decodes replies to str and is owned by the caller."""
Companion = Callable[[Settings, Redis, asyncio.Event], Awaitable[None]]
"""A task that runs beside a kind's workers until the event is set (not in burst mode)."""
DataModel = type[JobData]


@dataclass(frozen=True, slots=True)
class JobKind:
    type: str  # what POST /api/jobs calls it
    queue: str  # its stream; the queue's policy row is DEFAULT_POLICIES[queue]
    name: str  # the name its job records carry
    model: DataModel  # the data of one job
    handler: HandlerFactory
    companions: tuple[Companion, ...] = ()


class KindsError(ValueError):
    """The kinds disagree with each other or with the default policy table."""


class JobKinds:
    """The registry: kinds by type and by queue, refused when a kind is declared halfway."""

    def __init__(self, kinds: Iterable[JobKind], policy_queues: Collection[str]) -> None:
        kinds = tuple(kinds)
        problems = kind_problems(kinds, policy_queues)
        if problems:
            raise KindsError("the job kinds are not consistent:\n  " + "\n  ".join(problems))
        self.by_type = MappingProxyType({kind.type: kind for kind in kinds})
        self.by_queue = MappingProxyType({kind.queue: kind for kind in kinds})
        self.types = tuple(self.by_type)
        self.queues = tuple(self.by_queue)

    def __iter__(self) -> Iterator[JobKind]:
        return iter(self.by_type.values())

    def __len__(self) -> int:
        return len(self.by_type)


def kind_problems(kinds: Iterable[JobKind], policy_queues: Collection[str]) -> list[str]:
    """Every way `kinds` fall short, one line each naming the kind: a field missing, a type,
    queue or name used twice, a queue without a policy row, a policy row without a kind."""
    problems: list[str] = []
    seen: dict[str, dict[str, str]] = {"type": {}, "queue": {}, "name": {}}
    for kind in kinds:
        label = f"job kind {kind.type!r} (queue {kind.queue!r})"
        for field in ("type", "queue", "name"):
            value = getattr(kind, field)
            if not isinstance(value, str) or not value:
                problems.append(f"{label}: no {field}")
            elif value in seen[field]:
                problems.append(f"{label}: {field} {value!r} is already job kind {seen[field][value]!r}'s")
            else:
                seen[field][value] = kind.type
        if not (isinstance(kind.model, type) and issubclass(kind.model, JobData)):
            problems.append(f"{label}: no data model (a processors.models.JobData subclass)")
        if not callable(kind.handler):
            problems.append(f"{label}: no handler factory (settings, redis) -> handler")
        if not all(callable(companion) for companion in kind.companions):
            problems.append(f"{label}: a companion that is not callable")
        if kind.queue and kind.queue not in policy_queues:
            problems.append(f"{label}: no policy row for queue {kind.queue!r} in config/defaults.py "
                            "DEFAULT_POLICIES")
    problems += [f"DEFAULT_POLICIES row {queue!r}: no job kind consumes the queue (declare its JobKind in "
                 "processors/kinds.py, or remove the row)" for queue in policy_queues if queue not in seen["queue"]]
    return problems


# -- the handler factories: each imports its processor when called, so importing this
# module (the API does) loads no feedparser, VADER lexicon or dnspython ----------------

def _research(settings: Settings, redis: Redis) -> Handler:
    from processors.research import ResearchProcessor

    return ResearchProcessor(settings, redis).handle


def _enrichment(settings: Settings, redis: Redis) -> Handler:
    from processors.enrichment import EnrichmentProcessor

    return EnrichmentProcessor(settings, redis).handle


def _reports(settings: Settings, redis: Redis) -> Handler:
    from processors.reports import ReportProcessor

    return ReportProcessor(settings, redis).handle


def _report_schedules(settings: Settings, redis: Redis, stopping: asyncio.Event) -> Awaitable[None]:
    from processors.schedules import Schedules

    return Schedules(settings, redis).run(stopping)


def _signals(settings: Settings, redis: Redis) -> Handler:
    from processors.signals import SignalProcessor

    processor = SignalProcessor(settings, redis)
    # On the fast path (stream-kept jobs, the default) a whole batch is one call.
    if keeps_records(settings.policy(SIGNALS.queue)):
        return processor.handle
    return processor.batch_handler()  # type: ignore[return-value]


RESEARCH = JobKind(type="research", queue="research", name="company-research", model=ResearchData,
                   handler=_research)
ENRICHMENT = JobKind(type="enrichment", queue="enrichment", name="contact-enrichment", model=EnrichmentData,
                     handler=_enrichment)
REPORTS = JobKind(type="report", queue="reports", name="analytics-report", model=ReportData,
                  handler=_reports, companions=(_report_schedules,))
SIGNALS = JobKind(type="signal", queue="signals", name="signal-processing", model=SignalData,
                  handler=_signals)

KINDS = JobKinds([RESEARCH, ENRICHMENT, REPORTS, SIGNALS], DEFAULT_POLICIES)
