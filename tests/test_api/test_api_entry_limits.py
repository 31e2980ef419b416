"""One entry-size setting (issue 13, finding 8): a signal over MAX_ENTRY_BYTES is a 413
naming the limit at the API (POST /api/jobs and POST /api/signals) and nothing is
written, where it used to be accepted and then dead-lettered by the worker; a signal's
`data` is bounded in depth and keys, at the API and at the worker alike."""

from __future__ import annotations

from typing import Any

import pytest
import redis.asyncio as aioredis
from conftest import Api
from processor_support import make_ctx

from processors.models import MAX_DATA_DEPTH, MAX_DATA_KEYS
from processors.signals import SignalProcessor
from streams import UnrecoverableError

LIMIT = 65_536


def signal(data: dict[str, Any], signal_id: str = "sig_1") -> dict[str, Any]:
    return {"signalId": signal_id, "signalType": "Email Open", "companyId": "comp_1", "data": data}


def nested(levels: int) -> dict[str, Any]:
    data: dict[str, Any] = {}
    for _ in range(levels - 1):
        data = {"a": data}
    return data


async def signals_written(api: Api) -> int:
    _, overview = await api.get("/api/jobs")
    return int(overview["queues"]["signals"]["waiting"])


async def test_a_signal_over_the_entry_limit_is_413_at_the_api(api: Api) -> None:
    assert api.settings.max_entry_bytes == LIMIT
    big = signal({"blob": "x" * 900_000})  # under API_MAX_BODY (1 MiB), far over the entry limit
    status, body = await api.post("/api/jobs", {"type": "signal", "data": big})
    assert (status, body["error"]) == (413, "payload_too_large")
    assert f"over the limit of {LIMIT} (MAX_ENTRY_BYTES)" in body["message"]

    status, body = await api.post("/api/signals", big)
    assert status == 413 and f"limit of {LIMIT}" in body["message"]
    status, body = await api.post("/api/signals?partial=true", [signal({}, "sig_ok"), big])
    assert status == 413 and body["message"].startswith("signal 1: data is ")
    assert await signals_written(api) == 0

    just_under = signal({"blob": "x" * (LIMIT - 200)})
    assert (await api.post("/api/signals", just_under))[0] == 202
    assert await signals_written(api) == 1


@pytest.mark.parametrize("data, reason", [
    (nested(MAX_DATA_DEPTH + 1), f"nested deeper than {MAX_DATA_DEPTH} levels"),
    ({"list": [[[[[[[[1]]]]]]]]}, f"nested deeper than {MAX_DATA_DEPTH} levels"),
    ({f"k{i}": i for i in range(MAX_DATA_KEYS + 1)}, f"more than {MAX_DATA_KEYS} keys"),
    ({"a": {f"k{i}": i for i in range(MAX_DATA_KEYS)}}, f"more than {MAX_DATA_KEYS} keys"),
], ids=["objects", "arrays", "flat-keys", "nested-keys"])
async def test_signal_data_is_bounded_in_depth_and_keys(api: Api, engine_redis: aioredis.Redis, data: dict[str, Any],
                                                        reason: str) -> None:
    for path in ("/api/signals", "/api/jobs"):
        body = signal(data) if path == "/api/signals" else {"type": "signal", "data": signal(data)}
        status, answer = await api.post(path, body)
        assert status == 422, answer
        assert any(reason in d["message"] and "data" in d["path"] for d in answer["details"]), answer
    assert await signals_written(api) == 0
    # The worker refuses the same data, written around the API (one dead letter, no effect).
    ctx = make_ctx(engine_redis, api.settings, "signals", signal(data))
    with pytest.raises(UnrecoverableError, match=reason):
        await SignalProcessor(api.settings, engine_redis).handle(ctx)
    assert (await api.post("/api/signals", signal(nested(MAX_DATA_DEPTH))))[0] == 202
