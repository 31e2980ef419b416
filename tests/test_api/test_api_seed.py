"""Every curl example of the seed (`../shared/seed/job-queue-system.md`, "Job Types" and
"API Endpoints") replayed against the real app, with the answers' shapes checked."""

from __future__ import annotations

import re
from typing import Any

import pytest
from conftest import SEED_BODIES, Api, outcome_by_data, run_jobs, succeed

from streams import QueueAdmin

ISO = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$")
QUEUE_OF_TYPE = {"research": "research", "enrichment": "enrichment", "report": "reports", "signal": "signals"}
COUNT_FIELDS = {"waiting", "active", "completed", "failed", "delayed", "paused", "completedTotal", "failedTotal",
                "dead", "lag"}


@pytest.mark.parametrize("job_type", list(SEED_BODIES))
async def test_post_jobs_of_each_seed_type(api: Api, job_type: str) -> None:
    status, body = await api.post("/api/jobs", SEED_BODIES[job_type])
    assert status == 201, body
    assert set(body) == {"id", "queue", "status", "createdAt"}
    assert body["queue"] == QUEUE_OF_TYPE[job_type]
    assert body["id"].startswith(body["queue"] + "-")
    assert body["status"] == "waiting"
    assert ISO.match(body["createdAt"])


async def test_post_research_records_name_lane_and_data(api: Api, engine_redis: Any) -> None:
    _, body = await api.post("/api/jobs", SEED_BODIES["research"])
    job = await QueueAdmin(engine_redis, api.settings).job(body["id"])
    assert (job.name, job.lane, job.state.value) == ("company-research", "high", "waiting")
    assert job.data == SEED_BODIES["research"]["data"]


async def test_get_jobs_counts_every_queue(api: Api) -> None:
    for company in ("comp_1", "comp_2", "bad_3"):
        await api.add(companyId=company, companyName="Acme")
    await run_jobs(api.settings, outcome_by_data)
    await api.add()
    await api.post("/api/jobs", SEED_BODIES["report"])

    status, body = await api.get("/api/jobs")
    assert status == 200
    assert set(body) == {"totalJobs", "queues", "timestamp"}
    assert list(body["queues"]) == list(api.settings.queues)
    assert all(set(counts) == COUNT_FIELDS for counts in body["queues"].values())
    research = body["queues"]["research"]
    assert {k: research[k] for k in ("waiting", "active", "completed", "failed", "dead", "lag")} == \
        {"waiting": 1, "active": 0, "completed": 2, "failed": 1, "dead": 1, "lag": 1}
    assert body["queues"]["reports"]["waiting"] == 1
    assert body["totalJobs"] == 5
    assert ISO.match(body["timestamp"])


async def test_get_a_completed_job(api: Api) -> None:
    job_id = await api.add(companyId="comp_123", companyName="Acme Corp")
    await run_jobs(api.settings, succeed)

    status, body = await api.get(f"/api/jobs/{job_id}")
    assert status == 200
    assert {"id", "name", "queue", "status", "progress", "duration", "createdAt", "finishedAt", "data",
            "returnvalue", "attemptsMade", "maxAttempts", "processedAt", "failedReason", "logs"} <= set(body)
    assert (body["id"], body["name"], body["queue"], body["status"]) == \
        (job_id, "company-research", "research", "completed")
    assert body["progress"] == 100 and body["attemptsMade"] == 1 and body["maxAttempts"] == 1
    assert isinstance(body["duration"], int) and body["duration"] >= 0
    assert all(ISO.match(body[k]) for k in ("createdAt", "processedAt", "finishedAt"))
    assert body["data"] == {"companyId": "comp_123", "companyName": "Acme Corp"}
    assert body["returnvalue"] == {"researchId": f"res_{job_id}", "sentiment": "positive"}
    assert body["logs"] == ["researched Acme Corp"]
    assert body["failedReason"] is None


async def test_delete_job_retry_then_remove(api: Api) -> None:
    job_id = await api.add(companyId="bad_1", companyName="Acme")
    await run_jobs(api.settings, outcome_by_data)
    _, failed = await api.get(f"/api/jobs/{job_id}")
    assert failed["status"] == "failed" and failed["failedReason"] == "no data for bad_1"

    status, body = await api.delete(f"/api/jobs/{job_id}?action=retry")
    assert (status, body) == (200, {"id": job_id, "action": "retry", "status": "waiting"})
    _, retried = await api.get(f"/api/jobs/{job_id}")
    assert (retried["status"], retried["attemptsMade"]) == ("waiting", 0)

    status, body = await api.delete(f"/api/jobs/{job_id}?action=remove")
    assert (status, body) == (200, {"id": job_id, "action": "remove", "status": "removed"})
    assert (await api.get(f"/api/jobs/{job_id}"))[0] == 404


async def test_get_queue_stats_recent_jobs_and_by_status(api: Api) -> None:
    for company in ("comp_1", "bad_2", "comp_3"):
        await api.add(companyId=company, companyName="Acme")
    await run_jobs(api.settings, outcome_by_data)
    waiting = await api.add()

    status, stats = await api.get("/api/queues/research")
    assert status == 200
    assert "jobs" not in stats and "nextCursor" not in stats
    assert stats["name"] == "research" and stats["paused"] is False
    assert stats["counts"] == {"waiting": 1, "active": 0, "delayed": 0, "completed": 2, "failed": 1, "paused": 0,
                               "completedTotal": 2, "failedTotal": 1}
    assert (stats["dead"], stats["lag"]) == (1, 1)

    _, recent = await api.get("/api/queues/research?includeJobs=true&limit=20")
    assert [j["status"] for j in recent["jobs"]] == ["waiting", "completed", "completed", "failed"]
    assert recent["jobs"][0]["id"] == waiting and recent["nextCursor"] is None

    _, failed = await api.get("/api/queues/research?includeJobs=true&status=failed")
    assert [(j["status"], j["data"]["companyId"]) for j in failed["jobs"]] == [("failed", "bad_2")]


async def test_pause_resume_and_clean_queue(api: Api) -> None:
    job_id = await api.add()
    status, body = await api.post("/api/queues/research", {"action": "pause"})
    assert (status, body) == (200, {"queue": "research", "action": "pause", "paused": True})
    _, job = await api.get(f"/api/jobs/{job_id}")
    assert job["status"] == "paused"
    _, stats = await api.get("/api/queues/research")
    assert stats["paused"] is True and stats["counts"]["paused"] == 1 and stats["counts"]["waiting"] == 0

    status, body = await api.post("/api/queues/research", {"action": "resume"})
    assert (status, body) == (200, {"queue": "research", "action": "resume", "paused": False})
    await run_jobs(api.settings, succeed)

    clean = {"action": "clean", "options": {"grace": 86400000, "limit": 100, "type": "completed"}}
    status, body = await api.post("/api/queues/research", clean)
    assert (status, body["removed"], body["jobIds"]) == (200, 0, [])  # finished just now: within the grace
    clean["options"]["grace"] = 0
    status, body = await api.post("/api/queues/research", clean)
    assert (status, body["type"], body["removed"], body["jobIds"]) == (200, "completed", 1, [job_id])


async def test_clean_without_content_type_as_in_troubleshooting(api: Api) -> None:
    # curl -X POST .../api/queues/research -d '{"action":"clean","options":{"grace":3600000}}'
    # sends Content-Type: application/x-www-form-urlencoded.
    status, body = await api.call("POST", "/api/queues/research", data='{"action":"clean","options":{"grace":3600000}}',
                                  headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert (status, body["action"], body["type"], body["removed"]) == (200, "clean", "completed", 0)


async def test_delete_queue_jobs_by_ids_and_by_status(api: Api) -> None:
    first, second, third = [await api.add() for _ in range(3)]
    status, body = await api.delete(f"/api/queues/research?jobIds={first},{second},research-NOSUCHJOB")
    assert status == 200
    assert (body["removed"], body["notFound"], body["active"], body["more"]) == \
        ([first, second], ["research-NOSUCHJOB"], [], False)

    for company in ("bad_1", "bad_2"):
        await api.add(companyId=company, companyName="Acme")
    await run_jobs(api.settings, outcome_by_data)
    status, body = await api.delete("/api/queues/research?status=failed")
    assert status == 200 and len(body["removed"]) == 2
    _, stats = await api.get("/api/queues/research")
    assert (stats["counts"]["failed"], stats["counts"]["completed"]) == (0, 1)
    assert (await api.get(f"/api/jobs/{third}"))[1]["status"] == "completed"
