"""POST /api/signals: one signal, a JSON array, NDJSON; all-or-nothing and partial modes;
the configured maximum; what is written is the fast path's wire format and is processed;
one signal intake per app, checking signals for this endpoint and POST /api/jobs alike."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import orjson
import pytest
from conftest import PRODUCER_TOKEN, TOKENS, VIEWER_TOKEN, Api, StartApi, run_jobs
from redis.asyncio import Redis

from api.state import SIGNAL_INTAKE
from config import Settings
from processors.intake import SignalIntake
from processors.signals import SignalProcessor
from streams import QueueAdmin
from streams.keys import QueueKeys

Q = "signals"


def sig(n: int, **extra: Any) -> dict[str, Any]:
    return {"signalId": f"sig_{n}", "signalType": "Email Open", "companyId": "comp_1",
            "data": {"contactId": f"c_{n}"}, **extra}


async def written(redis: Redis, settings: Settings) -> list[dict[str, Any]]:
    keys = QueueKeys(settings.key_prefix, Q)
    out = []
    for lane in keys.lanes:
        out += [orjson.loads(fields["data"]) for _, fields in await redis.xrange(lane)]
    return out


async def test_one_signal_is_accepted_with_its_id(api: Api, engine_redis: Redis) -> None:
    status, body = await api.post("/api/signals", sig(1), token=PRODUCER_TOKEN)
    assert status == 202, body
    assert body["accepted"] == 1 and body["rejected"] == [] and body["ids"][0].startswith("signals-")
    assert await written(engine_redis, api.settings) == [sig(1)]


async def test_an_array_is_written_and_processed(api: Api, engine_redis: Redis) -> None:
    status, body = await api.post("/api/signals", [sig(n) for n in range(20)])
    assert status == 202 and body["accepted"] == 20 and len(set(body["ids"])) == 20
    await run_jobs(api.settings, SignalProcessor(api.settings, engine_redis).handle, Q)
    counts = (await QueueAdmin(engine_redis, api.settings).status(Q)).counts
    assert counts["completed"] == 20 and counts["failed"] == 0


async def test_ndjson_lines(api: Api, engine_redis: Redis) -> None:
    body = b"\n".join(orjson.dumps(sig(n)) for n in range(3)) + b"\n\n"
    status, answer = await api.post("/api/signals", data=body, headers={"Content-Type": "application/x-ndjson"})
    assert status == 202 and answer["accepted"] == 3
    assert [s["signalId"] for s in await written(engine_redis, api.settings)] == ["sig_0", "sig_1", "sig_2"]

    bad = orjson.dumps(sig(3)) + b"\n{nope\n"
    status, answer = await api.post("/api/signals", data=bad, headers={"Content-Type": "application/x-ndjson"})
    assert status == 422 and answer["details"][0]["path"] == [1] and "not valid JSON" in answer["details"][0]["message"]
    assert len(await written(engine_redis, api.settings)) == 3


async def test_an_invalid_batch_writes_nothing_and_names_each_item(api: Api, engine_redis: Redis) -> None:
    items = [sig(0), {"signalId": "sig_1", "companyId": "comp_1", "data": {}}, sig(2), sig(3, signalType="Fax"),
             "not an object"]
    status, body = await api.post("/api/signals", items)
    assert status == 422, body
    paths = [d["path"] for d in body["details"]]
    assert [1, "signalType"] in paths and [3, "signalType"] in paths and any(p[0] == 4 for p in paths)
    assert "nothing was written" in body["message"]
    assert await written(engine_redis, api.settings) == []


async def test_partial_writes_the_valid_items_and_lists_the_invalid(api: Api, engine_redis: Redis) -> None:
    items = [sig(0), {"signalId": "sig_1"}, sig(2, priority="high"), sig(3, signalType="Fax")]
    status, body = await api.post("/api/signals?partial=true", items)
    assert status == 202, body
    assert body["accepted"] == 2 and len(body["ids"]) == 2
    assert [r["index"] for r in body["rejected"]] == [1, 3]
    assert body["rejected"][1]["details"][0]["path"] == [3, "signalType"]
    assert sorted(s["signalId"] for s in await written(engine_redis, api.settings)) == ["sig_0", "sig_2"]


async def test_the_configured_maximum_and_bad_bodies(
        start_api: StartApi, make_settings: Callable[..., Settings], engine_redis: Redis) -> None:
    api = await start_api(make_settings(api_tokens=TOKENS, api_max_signals=5))
    status, body = await api.post("/api/signals", [sig(n) for n in range(6)])
    assert status == 413 and "at most 5" in body["message"]
    status, _ = await api.post("/api/signals", [sig(n) for n in range(5)])
    assert status == 202
    assert (await api.post("/api/signals", []))[0] == 422
    assert (await api.post("/api/signals", 42))[0] == 400
    assert (await api.post("/api/signals", data=b"{oops", headers={"Content-Type": "application/json"}))[0] == 400
    assert (await api.post("/api/signals", [sig(9)], token=VIEWER_TOKEN))[0] == 403
    assert len(await written(engine_redis, api.settings)) == 5


async def test_both_endpoints_refuse_an_unknown_signal_type_with_the_same_message(
        api: Api, engine_redis: Redis) -> None:
    status, job = await api.post("/api/jobs", {"type": "signal", "data": sig(1, signalType="Fax Received")})
    assert status == 422, job
    status, ingested = await api.post("/api/signals", sig(1, signalType="Fax Received"))
    assert status == 422, ingested
    (from_jobs,), (from_signals,) = job["details"], ingested["details"]
    assert (from_jobs["path"], from_signals["path"]) == (["data", "signalType"], ["signalType"])
    assert from_jobs["message"] == from_signals["message"] == \
        f"unknown signal type 'Fax Received'; use one of: {', '.join(api.settings.signal_types)}"
    assert await written(engine_redis, api.settings) == []


async def test_the_signal_intake_is_built_once_per_app(
        start_api: StartApi, make_settings: Callable[..., Settings], monkeypatch: pytest.MonkeyPatch) -> None:
    built: list[SignalIntake] = []
    build = SignalIntake.__init__

    def counted(intake: SignalIntake, settings: Settings) -> None:
        built.append(intake)
        build(intake, settings)

    monkeypatch.setattr(SignalIntake, "__init__", counted)
    api = await start_api(make_settings(api_tokens=TOKENS))
    for n in range(2):
        assert (await api.post("/api/signals", [sig(n), sig(n + 10)]))[0] == 202
        assert (await api.post("/api/jobs", {"type": "signal", "data": sig(n + 20)}))[0] == 201
        assert (await api.post("/api/signals", sig(n, signalType="Fax")))[0] == 422
    intake = api.client.server.app[SIGNAL_INTAKE]
    assert built == [intake]
