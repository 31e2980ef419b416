"""GET /metrics: the Prometheus text the API renders from Redis at scrape time, parsed
with the Prometheus client's own parser, after real jobs ran (two completed, one
dead-lettered); the viewer role is needed when tokens are configured. The queue's
completed and failed totals are counters kept in Redis: cleaning records lowers the
gauges, not them."""

from __future__ import annotations

from typing import Any

from conftest import VIEWER_TOKEN, Api, outcome_by_data, run_jobs
from prometheus_client.parser import text_string_to_metric_families


async def scrape(api: Api, token: str | None = VIEWER_TOKEN) -> tuple[int, str, str]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    async with api.client.get("/metrics", headers=headers) as response:
        return response.status, response.content_type, await response.text()


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def value(found: dict[Any, float], name: str, **labels: str) -> float:
    return found[(name, tuple(sorted(labels.items())))]


async def test_metrics_after_jobs_ran(api: Api) -> None:
    for company in ("comp_1", "comp_2", "bad_1"):
        await api.add(companyId=company, companyName="Acme")
    status, content_type, text = await scrape(api)
    assert status == 200 and content_type == "text/plain", text
    before = samples(text)
    assert value(before, "tgjobs_queue_jobs", queue="research", state="waiting") == 3
    assert value(before, "tgjobs_queue_jobs_completed_total", queue="research") == 0
    assert value(before, "tgjobs_queue_jobs_failed_total", queue="research") == 0
    assert sum(value(before, "tgjobs_queue_stream_length", queue="research", lane=lane, partition="0")
               for lane in ("high", "normal", "low")) == 3

    await run_jobs(api.settings, outcome_by_data)
    status, _, text = await scrape(api)
    assert status == 200
    after = samples(text)
    assert value(after, "tgjobs_queue_jobs", queue="research", state="completed") == 2
    assert value(after, "tgjobs_queue_jobs", queue="research", state="failed") == 1
    assert value(after, "tgjobs_queue_jobs", queue="research", state="waiting") == 0
    assert value(after, "tgjobs_queue_dead_letters", queue="research") == 1
    assert value(after, "tgjobs_queue_paused", queue="research") == 0
    for lane in ("high", "normal", "low"):
        assert value(after, "tgjobs_queue_group_lag", queue="research", lane=lane, partition="0", group="workers") == 0
        assert value(after, "tgjobs_queue_group_pending", queue="research", lane=lane, partition="0", group="workers") == 0
    assert value(after, "tgjobs_queue_live_workers", queue="research") == 0  # the burst worker registered none
    assert value(after, "tgjobs_redis_memory_used_bytes") > 0
    # Every configured queue is there, jobs or not.
    for queue in api.settings.queues:
        assert (("tgjobs_queue_dead_letters", (("queue", queue),)) in after)
    # The worker ran in this process: its own figures ride along.
    assert value(after, "tgjobs_worker_jobs_completed_total", queue="research") >= 2
    assert value(after, "tgjobs_worker_jobs_failed_total", queue="research", outcome="dead") >= 1
    assert value(after, "tgjobs_worker_job_run_seconds_count", queue="research") >= 3
    assert value(after, "tgjobs_worker_job_queue_wait_seconds_count", queue="research") >= 3
    assert value(after, "tgjobs_queue_jobs_completed_total", queue="research") == 2
    assert value(after, "tgjobs_queue_jobs_failed_total", queue="research") == 1

    for kind in ("completed", "failed"):
        status, body = await api.post("/api/queues/research", {"action": "clean", "options": {"type": kind}})
        assert status == 200 and body["removed"] == (2 if kind == "completed" else 1), body
    cleaned = samples((await scrape(api))[2])
    assert value(cleaned, "tgjobs_queue_jobs", queue="research", state="completed") == 0
    assert value(cleaned, "tgjobs_queue_jobs", queue="research", state="failed") == 0
    assert value(cleaned, "tgjobs_queue_jobs_completed_total", queue="research") == 2
    assert value(cleaned, "tgjobs_queue_jobs_failed_total", queue="research") == 1


async def test_metrics_need_a_token(api: Api) -> None:
    status, content_type, _ = await scrape(api, token=None)
    assert (status, content_type) == (401, "application/json")


async def test_metrics_are_documented_as_text(api: Api) -> None:
    status, document = await api.get("/api/openapi.json")
    assert status == 200
    operation = document["paths"]["/metrics"]["get"]
    assert list(operation["responses"]["200"]["content"]) == ["text/plain"]
    assert operation["responses"]["401"]["content"]["application/json"]
