"""Report schedules: a company, report type, cron expression (in TIMEZONE), recipient and
user, kept in Redis with each schedule's next due time. `fire_due_schedules` enqueues a
reports job for every due schedule exactly once per due time, however many workers call
it at once. The API creates, lists and deletes schedules; workers call it periodically.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any

import orjson
from croniter import croniter
from redis.asyncio import Redis

from config import Settings
from processors.kinds import REPORTS
from processors.models import ReportData, ScheduleData, record_id
from processors.periods import iso_instant
from processors.record_keys import ScheduleKeys
from streams import JobSpec, Producer
from streams.job import new_job_id

log = logging.getLogger(__name__)

FIRE_BATCH = 100  # due schedules handled per round; the rest are picked up by the next call


@dataclass(frozen=True, slots=True)
class Schedule:
    id: str
    companyId: str
    reportType: str
    cron: str
    emailTo: str | None
    userId: str
    createdAt: str
    nextRunAt: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


class Schedules:
    def __init__(self, settings: Settings, redis: Redis, producer: Producer | None = None) -> None:
        self.settings = settings
        self.redis = redis
        self.keys = ScheduleKeys(settings.key_prefix)
        self.producer = producer or Producer(redis, settings)

    # -- managed by the API ---------------------------------------------------------------

    async def create(self, data: ScheduleData, now: datetime | None = None) -> Schedule:
        now = now or datetime.now(UTC)
        schedule = Schedule(record_id("sch", new_job_id("schedule")), data.companyId, data.reportType,
                            data.cron, data.emailTo, data.userId, iso_instant(_ms(now)))
        due = self.next_run(data.cron, now)
        definition = orjson.dumps({k: v for k, v in schedule.as_dict().items() if k != "nextRunAt"})
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.hset(self.keys.definitions, schedule.id, definition)
            pipe.zadd(self.keys.due, {schedule.id: _ms(due)})
            await pipe.execute()
        return Schedule(**{**schedule.as_dict(), "nextRunAt": iso_instant(_ms(due))})

    async def get(self, schedule_id: str) -> Schedule | None:
        raw = await self.redis.hget(self.keys.definitions, schedule_id)
        if raw is None:
            return None
        return (await self._with_due([orjson.loads(raw)]))[0]

    async def list(self, company_id: str | None = None) -> list[Schedule]:
        rows = [orjson.loads(raw) for raw in (await self.redis.hgetall(self.keys.definitions)).values()]
        if company_id is not None:
            rows = [row for row in rows if row["companyId"] == company_id]
        rows.sort(key=lambda row: (row["createdAt"], row["id"]))
        return await self._with_due(rows)

    async def delete(self, schedule_id: str) -> bool:
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.hdel(self.keys.definitions, schedule_id)
            pipe.zrem(self.keys.due, schedule_id)
            removed, _ = await pipe.execute()
        return bool(removed)

    def next_run(self, cron: str, after: datetime) -> datetime:
        """The first time strictly after `after` that `cron` names, in TIMEZONE."""
        return croniter(cron, after.astimezone(self.settings.zone)).get_next(datetime)

    # -- driven by the workers ------------------------------------------------------------

    async def fire_due_schedules(self, now: datetime | None = None) -> list[str]:
        """Enqueues a reports job for each schedule due at `now` and moves it to its next
        run; returns the ids of the jobs this call created. The claim of a (schedule, due
        time) pair is the job's idempotency key, which names both and is taken in the
        same script that adds the job: concurrent callers get the same job back and add
        nothing, and a caller that dies between the add and moving the due time on leaves
        a pair that the next caller finds already claimed. Runs missed while no worker
        was up collapse into one."""
        now = now or datetime.now(UTC)
        due = await self.redis.zrangebyscore(self.keys.due, "-inf", _ms(now), start=0, num=FIRE_BATCH,
                                             withscores=True)
        if not due:
            return []
        definitions = await self.redis.hmget(self.keys.definitions, [schedule_id for schedule_id, _ in due])
        firing: list[tuple[str, int, dict[str, Any]]] = []
        for (schedule_id, due_ms), raw in zip(due, definitions):
            if raw is None:  # deleted after the range was read
                await self.redis.zrem(self.keys.due, schedule_id)
                continue
            firing.append((schedule_id, int(due_ms), orjson.loads(raw)))
        specs = [JobSpec(_report_data(definition), name=REPORTS.name,  # named as the API names them
                         idempotency_key=f"schedule:{schedule_id}:{due_ms}")
                 for schedule_id, due_ms, definition in firing]
        added = await self.producer.add_many(REPORTS.queue, specs)
        async with self.redis.pipeline(transaction=False) as pipe:
            for schedule_id, due_ms, definition in firing:
                after = max(now, datetime.fromtimestamp(due_ms / 1000, UTC))
                # XX: a schedule deleted meanwhile stays deleted; GT: never moves a due time back.
                pipe.zadd(self.keys.due, {schedule_id: _ms(self.next_run(definition["cron"], after))},
                          xx=True, gt=True)
            await pipe.execute()
        created = [job.id for job in added if job.created]
        for (schedule_id, due_ms, _), job in zip(firing, added):
            if job.created:
                log.info("schedule %s due %s: enqueued report job %s", schedule_id, iso_instant(due_ms), job.id)
        return created

    async def run(self, stopping: asyncio.Event) -> None:
        """Calls fire_due_schedules every `schedule_poll_interval` until `stopping` is set;
        a failed round (Redis away) is logged and the next one tries again."""
        while not stopping.is_set():
            try:
                await self.fire_due_schedules()
            except Exception:
                log.exception("firing due report schedules failed; trying again next round")
            try:
                await asyncio.wait_for(stopping.wait(), self.settings.schedule_poll_interval)
            except TimeoutError:
                pass

    async def _with_due(self, rows: list[dict[str, Any]]) -> list[Schedule]:
        if not rows:
            return []
        scores = await self.redis.zmscore(self.keys.due, [row["id"] for row in rows])
        return [Schedule(**{**row, "nextRunAt": iso_instant(int(score)) if score is not None else None})
                for row, score in zip(rows, scores)]


def _report_data(definition: dict[str, Any]) -> dict[str, Any]:
    data = {"companyId": definition["companyId"], "reportType": definition["reportType"],
            "userId": definition["userId"]}
    if definition.get("emailTo"):
        data["emailTo"] = definition["emailTo"]
    return ReportData.model_validate(data).model_dump(exclude_defaults=True)


def _ms(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)
