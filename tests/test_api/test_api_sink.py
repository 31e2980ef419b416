"""The PostgreSQL sink as the API shows it, with the database away (no sink has run):
the outbox's lag in GET /api/streams and /metrics, then rows PostgreSQL rejected as
dead letters at /api/sink/dead (listed, replayed into their outbox, purged; bad ids 422)."""

from __future__ import annotations

from collections.abc import Callable

from conftest import TOKENS, VIEWER_TOKEN, Api, StartApi
from test_api_metrics import samples, scrape, value

from config import Settings
from processors.models import SignalData
from processors.outbox_drain import OutboxDrain, Rejected
from processors.signals import SignalProcessor
from streams import connect

UNREACHABLE_DB = "postgresql://sink:secret@127.0.0.1:9/nowhere"  # the sink never runs in these tests


async def test_outbox_lag_and_sink_dead_letters(start_api: StartApi, make_settings: Callable[..., Settings]) -> None:
    settings = make_settings(api_tokens=TOKENS, database_url=UNREACHABLE_DB)
    api: Api = await start_api(settings)
    redis = connect(settings)
    try:
        signals = [SignalData(signalId=f"sig_{n}", signalType="Email Open", companyId=f"comp_{n % 2}", data={})
                   for n in range(6)]
        await SignalProcessor(settings, redis).process_signals(signals)

        status, overview = await api.get("/api/streams", token=VIEWER_TOKEN)
        assert status == 200, overview
        assert overview["sink"] == {"enabled": True, "lag": 2, "waitingCompanies": 2, "deadLetters": 0,
                                    "rowsTotal": {}}  # one outbox entry per company's batch
        status, _, text = await scrape(api)
        assert status == 200 and value(samples(text), "tgjobs_sink_lag") == 2

        # A sink reads the batch and PostgreSQL rejects one row: it becomes a dead letter.
        drain = OutboxDrain(redis, settings)
        batch = await drain.read()
        entry, row = batch.rows()["signals"][0]
        await drain.settle(batch, {"signals": 5, "companies": 2},
                           [Rejected(entry, "signals", row, "23514 CheckViolationError: no_spam")])
        status, page = await api.get("/api/sink/dead?limit=10", token=VIEWER_TOKEN)
        assert status == 200 and page["nextCursor"] is None
        (letter,) = page["items"]
        assert (letter["table"], letter["rowId"], letter["error"]) == ("signals", row["id"],
                                                                       "23514 CheckViolationError: no_spam")
        after = samples((await scrape(api))[2])
        assert value(after, "tgjobs_sink_lag") == 0 and value(after, "tgjobs_sink_dead_letters") == 1
        assert value(after, "tgjobs_sink_rows_total", table="signals") == 5

        status, problem = await api.post("/api/sink/dead", {"action": "replay", "ids": ["not-an-id"]})
        assert status == 422 and [(d["location"], d["path"]) for d in problem["details"]] == [("body", ["ids", 0])]
        status, replayed = await api.post("/api/sink/dead", {"action": "replay", "ids": [letter["id"]]})
        assert (status, replayed) == (200, {"action": "replay", "replayed": [letter["id"]]})
        _, overview = await api.get("/api/streams")
        assert (overview["sink"]["lag"], overview["sink"]["deadLetters"]) == (1, 0)  # back in its outbox
        status, purged = await api.post("/api/sink/dead", {"action": "purge"})
        assert (status, purged) == (200, {"action": "purge", "purged": 0})
    finally:
        await redis.aclose()
