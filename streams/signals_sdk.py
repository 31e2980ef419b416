"""Producer SDK of the signals queue: publish signals in the wire format the fast path
reads (README, "Signals: wire format and producers").

One signal is one ``XADD`` to the lane named by its ``priority`` (``high``, ``normal``
(default), ``low``) with a single field ``data``: the signal as compact UTF-8 JSON. The
entry id is Redis's own (``*``); the signal's job id is ``<queue>-<entry id>``. On a
partitioned queue the lane is the one of the partition its ``companyId`` routes to, and
a partition p > 0 names itself in the job id: ``<queue>-p<p>-<entry id>``.

``SignalPublisher`` (redis.asyncio) and ``SyncSignalPublisher`` (redis-py's sync client,
for WSGI apps, threads and scripts) each have ``publish_signal(signal)`` and
``publish_signals(signals)``; the batch form validates every item first (nothing is
written when one is invalid) and pipelines the whole list, one round trip per chunk of
``chunk_size`` entries. The engine knows neither the signal model nor which queue is
the signals one (streams must not import processors): pass ``queue`` and ``validator``,
a pydantic model class or a callable returning the validated value;
``processors.publish`` builds publishers on the signal intake (``processors.intake``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import redis as sync_redis
from pydantic import BaseModel, ValidationError
from redis.asyncio import Redis

from config import Settings
from streams.connection import connect_sync
from streams.replication import ReplicaWait
from streams.errors import EntryTooLarge, InvalidJob, UnknownQueue
from streams.keeping import keeps_records
from streams import tracing
from streams.producer import EntryRouter, JobSpec, append_entries, encode_data, entry_fields

CHUNK_SIZE = 1000

Validator = Callable[[Any], Any]


def _as_validator(validator: type[BaseModel] | Validator | None) -> Validator | None:
    if isinstance(validator, type) and issubclass(validator, BaseModel):
        return validator.model_validate
    return validator


class SignalEncoder:
    """Turns signals into (stream key, data JSON) pairs; shared by both publishers."""

    def __init__(self, settings: Settings, *, queue: str,
                 validator: type[BaseModel] | Validator | None = None) -> None:
        if queue not in settings.queues:
            raise UnknownQueue(queue)
        if keeps_records(settings.policy(queue)):
            raise InvalidJob(f"queue {queue} keeps job records; publish to it with streams.Producer")
        self.queue = queue
        self.router = EntryRouter(settings, queue)
        self.max_bytes = settings.max_entry_bytes
        self.validate = _as_validator(validator)

    def encode(self, signal: Any, index: int | None = None) -> tuple[str, str]:
        where = "" if index is None else f"signal {index}: "
        value = signal
        if self.validate is not None and not isinstance(value, BaseModel):
            try:
                value = self.validate(value)
            except ValidationError as exc:
                raise InvalidJob(f"{where}invalid signal: {_summary(exc)}") from None
            except (ValueError, TypeError) as exc:
                raise InvalidJob(f"{where}invalid signal: {exc}") from None
        if isinstance(value, BaseModel):
            value = value.model_dump(mode="json", exclude_unset=True)
        if not isinstance(value, Mapping):
            raise InvalidJob(f"{where}a signal is a JSON object, not {type(value).__name__}")
        spec = JobSpec(value)
        try:
            stream, data = self.router.stream(spec), encode_data(spec, self.max_bytes)
        except EntryTooLarge as exc:
            raise EntryTooLarge(exc.size, exc.limit, where) from None
        except InvalidJob as exc:
            raise InvalidJob(f"{where}{exc}") from None
        return stream, data

    def encode_all(self, signals: Iterable[Any]) -> list[tuple[str, str]]:
        return [self.encode(signal, index) for index, signal in enumerate(signals)]

    def job_id(self, stream: str, entry_id: str | bytes) -> str:
        return self.router.job_id(stream, entry_id.decode() if isinstance(entry_id, bytes) else entry_id)


def _summary(exc: ValidationError) -> str:
    return "; ".join(f"{'.'.join(map(str, e['loc'])) or 'signal'}: {e['msg']}"
                     for e in exc.errors(include_url=False, include_input=False))


class SignalPublisher:
    """Publishes signals with an async client (``streams.connect(settings)``)."""

    def __init__(self, redis: Redis, settings: Settings, *, queue: str,
                 validator: type[BaseModel] | Validator | None = None, chunk_size: int = CHUNK_SIZE) -> None:
        self.redis = redis
        self.wait = ReplicaWait(redis, settings)
        self.encoder = SignalEncoder(settings, queue=queue, validator=validator)
        self.chunk_size = max(1, chunk_size)

    async def publish_signal(self, signal: Any) -> str:
        """Validates and writes one signal (one XADD); returns its job id."""
        (job_id,) = await self.publish_encoded([self.encoder.encode(signal)])
        return job_id

    async def publish_signals(self, signals: Iterable[Any]) -> list[str]:
        """Validates every signal, then writes them all, one pipeline per chunk; returns
        the job ids in order. An invalid signal raises InvalidJob and nothing is written."""
        return await self.publish_encoded(self.encoder.encode_all(signals))

    async def publish_encoded(self, entries: Sequence[tuple[str, str]]) -> list[str]:
        return await append_signals(self.wait, self.encoder, entries, self.chunk_size)


async def append_signals(wait: ReplicaWait, encoder: SignalEncoder, entries: Sequence[tuple[str, str]],
                         chunk_size: int = CHUNK_SIZE) -> list[str]:
    """XADDs signals `encoder` encoded, one pipeline per chunk; returns their job ids in order."""
    with tracing.adding(encoder.queue, len(entries)) as span:
        entry_ids = await append_entries(wait, entries, chunk_size, span.traceparent)
    return [encoder.job_id(stream, entry_id) for (stream, _), entry_id in zip(entries, entry_ids)]


class SyncSignalPublisher:
    """Publishes signals with redis-py's synchronous client; safe to share between
    threads (each call takes its own connection from the client's pool)."""

    def __init__(self, redis: sync_redis.Redis, settings: Settings, *, queue: str,
                 validator: type[BaseModel] | Validator | None = None, chunk_size: int = CHUNK_SIZE) -> None:
        self.redis = redis
        self.wait = ReplicaWait(redis, settings)
        self.encoder = SignalEncoder(settings, queue=queue, validator=validator)
        self.chunk_size = max(1, chunk_size)

    @classmethod
    def connect(cls, settings: Settings, **kwargs: Any) -> SyncSignalPublisher:
        """A publisher with its own sync client on the configured Redis (close with `close()`)."""
        client = connect_sync(settings)
        return cls(client, settings, **kwargs)

    def close(self) -> None:
        self.redis.close()

    def publish_signal(self, signal: Any) -> str:
        (job_id,) = self.publish_signals([signal])
        return job_id

    def publish_signals(self, signals: Iterable[Any]) -> list[str]:
        entries = self.encoder.encode_all(signals)
        ids: list[str] = []
        with tracing.adding(self.encoder.queue, len(entries)) as span:
            for start in range(0, len(entries), self.chunk_size):
                chunk = entries[start:start + self.chunk_size]
                pipe = self.redis.pipeline(transaction=False)
                for stream, data in chunk:
                    pipe.xadd(stream, entry_fields(data, span.traceparent))
                waits = self.wait.append(pipe, {stream for stream, _ in chunk})
                entry_ids = self.wait.check(pipe.execute(), waits)
                ids += [self.encoder.job_id(stream, entry_id) for (stream, _), entry_id in zip(chunk, entry_ids)]
        return ids
