"""The research processor: the built-in analyser with no provider at all, the homepage and
news feeds from local servers, the LLM path with its one repair, and engine retries when
the LLM fails (invalid twice, 429)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest
import redis.asyncio as aioredis
from fake_services import FakeHttp, fake_http, llm_json  # noqa: F401  (fixture)
from processor_support import drain, jobs, make_ctx, signal

from config import Settings
from processors.research import ResearchProcessor
from processors.signals import SignalProcessor
from processors.store import Store
from streams import Producer

HOMEPAGE = """<!doctype html><html><head><meta charset="utf-8">
<title>Acme Corp | Industrial Rocket Skates</title>
<meta name="description" content="Acme Corp builds industrial rocket skates for fast logistics teams.">
<script>var ignored = "<h1>not a heading</h1>";</script></head>
<body><h1>Rocket skates for logistics</h1><h2>Fast logistics, safe skates</h2></body></html>"""

NEWS = [
    {"title": "Acme Corp wins award for excellent, innovative rocket skates", "link": "https://news.test/1",
     "description": "&lt;p&gt;A great success and strong growth.&lt;/p&gt;", "date": "Mon, 15 Jan 2024 10:00:00 GMT"},
    {"title": "Acme Corp recalls skates after terrible crash injures workers", "link": "https://news.test/2",
     "description": "A painful failure.", "date": "Tue, 16 Jan 2024 10:00:00 GMT"},
    {"title": "Unrelated Widgets Inc opens office", "link": "https://news.test/3",
     "description": "Nothing about the company.", "date": "Wed, 17 Jan 2024 10:00:00 GMT"},
]

DATA = {"companyId": "comp_1", "companyName": "Acme Corp", "domain": "acme-corp.com", "userId": "u_1"}


def ago(days: float) -> str:
    return (datetime.now(UTC) - timedelta(days=days)).isoformat()


async def test_builtin_analyser_without_any_provider(engine_redis: aioredis.Redis,
                                                     make_settings: Callable[..., Settings]) -> None:
    settings = make_settings()
    await SignalProcessor(settings, engine_redis).process_signals([
        signal("comp_1", "Email Open", timestamp=ago(9)),
        signal("comp_1", "Demo Request", timestamp=ago(1), contactId="c_1"),
        signal("comp_1", "Demo Request", timestamp=ago(2), contactId="c_2"),
        signal("comp_1", "Email Click", timestamp=ago(0.1)),
    ])
    store = Store(engine_redis, settings)
    await store.update_contact("comp_1", "c_1", lambda _: {"contactId": "c_1", "title": "VP Logistics"})
    ctx = make_ctx(engine_redis, settings, "research", {k: v for k, v in DATA.items() if k != "domain"})

    result = await ResearchProcessor(settings, engine_redis).handle(ctx)

    assert result == {"researchId": result["researchId"], "sentiment": "unknown", "provider": "builtin",
                      "insights": result["insights"], "newsItems": 0}
    record = await store.research(result["researchId"])
    assert record is not None and record == await store.latest_research("comp_1")
    assert record["companyName"] == "Acme Corp" and record["provider"] == "builtin"
    assert record["competitors"] is None
    assert set(record["unavailable"]) == {"website", "news", "competitors", "sentiment"}
    assert record["engagement"]["last7Days"] == {"Demo Request": 2, "Email Click": 1}
    assert record["engagement"]["previous7Days"] == {"Email Open": 1}
    assert sorted(record["engagement"]["newContacts"]) == ["c_1", "c_2"]
    insights = record["insights"]
    assert "Engagement rose 200% week over week (3 signals vs 1)." in insights
    assert "Strong buying signals in the last 7 days: 2 Demo Request." in insights
    assert "2 contacts engaged for the first time in the last 7 days." in insights
    assert "1 enriched contact, titles include VP Logistics." in insights
    assert any(line.startswith("Intent score 19.") and "below the research threshold of 25" in line for line in insights)
    assert record["summary"].startswith("Acme Corp: Engagement rose 200%")
    assert (await store.profile("comp_1"))["companyName"] == "Acme Corp"


async def test_homepage_and_news_are_read_and_scored(engine_redis: aioredis.Redis, fake_http: FakeHttp,
                                                     make_settings: Callable[..., Settings]) -> None:
    fake_http.homepage = HOMEPAGE
    fake_http.feed_items = NEWS
    settings = make_settings(homepage_url=fake_http.homepage_url,  # the operator's host: trusted
                             news_feed_urls=[fake_http.feed_url("{company}"), fake_http.feed_url("general")])
    result = await ResearchProcessor(settings, engine_redis).handle(make_ctx(engine_redis, settings, "research", DATA))

    record = await Store(engine_redis, settings).research(result["researchId"])
    assert record is not None
    website = record["website"]
    assert website["title"] == "Acme Corp | Industrial Rocket Skates"
    assert website["description"] == "Acme Corp builds industrial rocket skates for fast logistics teams."
    assert website["headings"] == ["Rocket skates for logistics", "Fast logistics, safe skates"]
    assert "rocket skates" in record["keyPhrases"] and not any("acme" in p for p in record["keyPhrases"])
    assert "q=Acme+Corp" in fake_http.feed_requests
    # The search feed gives all three items; the general one only those naming the company,
    # which repeat the search feed's and are dropped.
    titles = [item["title"] for item in record["news"]]
    assert len(titles) == 3 and titles[0].startswith("Unrelated")  # newest first
    by_link = {item["link"]: item for item in record["news"]}
    assert by_link["https://news.test/1"]["sentiment"] == "positive"
    assert by_link["https://news.test/2"]["sentiment"] == "negative"
    assert by_link["https://news.test/1"]["summary"] == "A great success and strong growth."
    assert by_link["https://news.test/1"]["published"] == "2024-01-15T10:00:00.000Z"
    assert {s["type"] for s in record["sources"]} == {"signals", "website", "feed"}
    assert "website" not in record["unavailable"] and "news" not in record["unavailable"]
    assert any(line.startswith("Negative coverage to check") for line in record["insights"])


async def test_general_feed_keeps_only_items_naming_the_company(
        engine_redis: aioredis.Redis, fake_http: FakeHttp, make_settings: Callable[..., Settings]) -> None:
    fake_http.feed_items = NEWS
    settings = make_settings(news_feed_urls=[fake_http.feed_url("general")])
    result = await ResearchProcessor(settings, engine_redis).handle(make_ctx(engine_redis, settings, "research", DATA))
    record = await Store(engine_redis, settings).research(result["researchId"])
    assert record is not None
    assert sorted(item["link"] for item in record["news"]) == ["https://news.test/1", "https://news.test/2"]


def _llm_settings(make_settings: Callable[..., Settings], fake: FakeHttp, **more: object) -> Settings:
    return make_settings(llm_base_url=fake.llm_url, llm_api_key="sk-test", llm_model="test-model", **more)


BRIEF = llm_json(summary="Acme Corp is evaluating logistics tooling.", insights=["Two demo requests this week."],
                 competitors=["Roadrunner Logistics"], sentiment="positive")


async def test_llm_brief_is_validated_after_one_repair(engine_redis: aioredis.Redis, fake_http: FakeHttp,
                                                       make_settings: Callable[..., Settings]) -> None:
    fake_http.llm_answers = ['{"summary": "missing the rest"}', f"```json\n{BRIEF}\n```"]
    settings = _llm_settings(make_settings, fake_http)
    result = await ResearchProcessor(settings, engine_redis).handle(make_ctx(engine_redis, settings, "research", DATA))

    assert result["provider"] == "llm:test-model" and result["sentiment"] == "positive"
    record = await Store(engine_redis, settings).research(result["researchId"])
    assert record is not None
    assert record["competitors"] == ["Roadrunner Logistics"]
    assert record["insights"] == ["Two demo requests this week."]
    assert "competitors" not in record["unavailable"]
    first, repair = fake_http.llm_requests
    assert first["authorization"] == "Bearer sk-test"
    assert first["body"]["model"] == "test-model"
    assert first["body"]["response_format"] == {"type": "json_object"}
    assert '"Acme Corp"' in first["body"]["messages"][1]["content"]
    assert "JSON Schema" in first["body"]["messages"][0]["content"]
    assert "That answer is invalid" in repair["body"]["messages"][-1]["content"]
    assert "insights" in repair["body"]["messages"][-1]["content"]


@pytest.mark.parametrize("failures", [["not json", "still not json"], [429], [503]],
                         ids=["invalid-twice", "rate-limited", "unavailable"])
async def test_llm_failures_fail_the_attempt_and_the_engine_retries(
        engine_redis: aioredis.Redis, fake_http: FakeHttp, make_settings: Callable[..., Settings],
        failures: list[str | int]) -> None:
    fake_http.llm_answers = [*failures, BRIEF]
    settings = _llm_settings(make_settings, fake_http, research={"backoff_delay": 0.05, "rate_limit": "none"})
    job = await Producer(engine_redis, settings).add("research", DATA)
    await drain(settings, "research", ResearchProcessor(settings, engine_redis).handle)

    (done,) = await jobs(engine_redis, settings, "research")
    assert done.id == job.id and done.state == "completed"
    assert done.attemptsMade == 2 and done.returnvalue["provider"] == "llm:test-model"
    assert done.progress == 100
    assert len(fake_http.llm_requests) == len(failures) + 1
