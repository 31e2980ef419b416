"""The research processor: gathers what is known about a company (signal analytics,
intent, enriched contacts), its homepage and its news, then writes a brief with the LLM
when one is configured, else with the built-in analyser. Stores the research record
and returns {"researchId", "sentiment", ...}. Registered for the `research` queue.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from redis.asyncio import Redis

from config import Settings
from processors.analysis import (Brief, Engagement, ScoredNews, builtin_brief, key_phrases,
                                 sentiment_label, sentiment_score)
from processors.llm import Llm, ResearchBrief
from processors.models import ResearchData, parse_job_data, record_id
from processors.news import NewsItem, gather_news
from processors.periods import iso_instant, local_day, midnight_ms, now_ms
from processors.store import Store
from processors.outbound import FetchFailed, OutboundHttp, host_from_data, shown_url
from processors.web import Homepage, fetch_homepage
from streams import JobContext

WEEK_DAYS = 7
SYSTEM_PROMPT = (
    "You write research briefs on companies for a B2B sales team. Use only the facts in the "
    "user message (engagement figures from our own signals, the company's homepage, news items). "
    "Never invent numbers, events, people or competitors: name a competitor only when the facts "
    "name it or make it plain; when the facts do not support something, leave it out."
)


class ResearchProcessor:
    def __init__(self, settings: Settings, redis: Redis, *, llm: Llm | None = None) -> None:
        self.settings = settings
        self.store = Store(redis, settings)
        self.llm = llm or (Llm(settings) if settings.llm_configured else None)

    async def handle(self, ctx: JobContext) -> dict[str, Any]:
        job = parse_job_data(ResearchData, ctx.data)
        research_id = record_id("res", ctx.id)
        now = now_ms()
        await self.store.save_profile(job.companyId, companyName=job.companyName, domain=job.domain)
        unavailable: dict[str, str] = {}
        sources: list[dict[str, Any]] = [{"type": "signals", "status": "ok"}]

        await ctx.progress(10)
        engagement = await self._engagement(job.companyId, now)

        await ctx.progress(30)
        async with OutboundHttp(allow_private=self.settings.fetch_allow_private,
                                timeout=self.settings.http_timeout) as http:
            homepage = await self._homepage(http, job, sources, unavailable)
            await ctx.progress(50)
            news = await self._news(http, job, sources, unavailable)
        scores = [sentiment_score(f"{item.title}. {item.summary}") for item in news]

        await ctx.progress(70)
        page_texts = [t for t in (homepage.title, homepage.description, *homepage.headings) if t] if homepage else []
        phrases = key_phrases(page_texts, exclude=[job.companyName])
        if self.llm is not None:
            facts = _facts(job, engagement, homepage, phrases, news, scores)
            answer = await self.llm.ask_json(SYSTEM_PROMPT, facts, ResearchBrief)
            brief = Brief(answer.summary, answer.insights, answer.sentiment)
            competitors: list[str] | None = answer.competitors
            provider = f"llm:{self.llm.model}"
            sources.append({"type": "llm", "model": self.llm.model, "status": "ok"})
        else:
            brief = builtin_brief(job.companyName, engagement, self.settings.signal_weights,
                                  [ScoredNews(item.title, score) for item, score in zip(news, scores)],
                                  homepage.description if homepage else None, phrases)
            competitors = None
            provider = "builtin"
            unavailable["competitors"] = "needs an LLM (LLM_BASE_URL, LLM_MODEL); not derived from signals"
        if brief.sentiment == "unknown":
            unavailable["sentiment"] = "no news items to score"

        await ctx.progress(90)
        record = {
            "researchId": research_id,
            "jobId": ctx.id,
            "companyId": job.companyId,
            "companyName": job.companyName,
            "domain": job.domain,
            "requestedBy": job.userId,
            "summary": brief.summary,
            "insights": brief.insights,
            "competitors": competitors,
            "sentiment": brief.sentiment,
            "news": [{**item.as_dict(), "sentiment": sentiment_label(score), "sentimentScore": round(score, 3)}
                     for item, score in zip(news, scores)],
            "website": homepage.as_dict() if homepage else None,
            "keyPhrases": phrases,
            "engagement": _engagement_dict(engagement),
            "sources": sources,
            "provider": provider,
            "unavailable": unavailable,
            "generatedAt": iso_instant(now),
        }
        await self.store.save_research(record, now)
        await ctx.progress(100)
        return {"researchId": research_id, "sentiment": brief.sentiment, "provider": provider,
                "insights": len(brief.insights), "newsItems": len(news)}

    async def _engagement(self, company_id: str, now: int) -> Engagement:
        zone = self.settings.zone
        today = local_day(now, zone)
        days = [today - timedelta(days=n) for n in range(2 * WEEK_DAYS - 1, -1, -1)]
        last, this = days[:WEEK_DAYS], days[WEEK_DAYS:]
        figures = await self.store.days(company_id, days)
        contacts = await self.store.company_contacts(company_id)
        return Engagement(
            this_week=_sum_counts(figures[WEEK_DAYS:]),
            last_week=_sum_counts(figures[:WEEK_DAYS]),
            intent_score=round(await self.store.intent_score(company_id, now), 3),
            intent_threshold=self.settings.intent_threshold,
            engaged_this_week=len(await self.store.engaged_contacts(company_id, this)),
            engaged_last_week=len(await self.store.engaged_contacts(company_id, last)),
            new_contacts=await self.store.newly_engaged(company_id, midnight_ms(this[0], zone)),
            enriched_contacts=[{"contactId": c.get("contactId"), "title": c.get("title"),
                                "company": c.get("company")} for c in contacts],
        )

    async def _homepage(self, http: OutboundHttp, job: ResearchData, sources: list[dict[str, Any]],
                        unavailable: dict[str, str]) -> Homepage | None:
        if job.domain is None:
            unavailable["website"] = "no domain given"
            return None
        s = self.settings
        url = s.homepage_url.replace("{domain}", job.domain)
        try:
            page = await fetch_homepage(http, url, max_bytes=s.homepage_max_bytes,
                                        trusted_host=not host_from_data(s.homepage_url))
        except FetchFailed as exc:
            unavailable["website"] = str(exc)
            sources.append({"type": "website", "url": shown_url(url), "status": "unavailable", "reason": str(exc)})
            return None
        sources.append({"type": "website", "url": page.final_url, "status": "ok"})
        return page

    async def _news(self, http: OutboundHttp, job: ResearchData, sources: list[dict[str, Any]],
                    unavailable: dict[str, str]) -> list[NewsItem]:
        s = self.settings
        if not s.news_feed_urls:
            unavailable["news"] = "no news feeds configured (NEWS_FEED_URLS)"
            return []
        items, outcomes = await gather_news(http, s.news_feed_urls, job.companyName, job.domain,
                                            max_bytes=s.feed_max_bytes, max_items=s.news_max_items)
        sources += [outcome.as_dict() for outcome in outcomes]
        if all(outcome.error for outcome in outcomes):
            unavailable["news"] = "; ".join(f"{o.url}: {o.error}" for o in outcomes)
        return items


def _sum_counts(figures: list[Any]) -> dict[str, int]:
    total: dict[str, int] = {}
    for figure in figures:
        for name, count in figure.counts.items():
            total[name] = total.get(name, 0) + count
    return total


def _engagement_dict(e: Engagement) -> dict[str, Any]:
    return {"last7Days": e.this_week, "previous7Days": e.last_week, "intentScore": e.intent_score,
            "intentThreshold": e.intent_threshold, "engagedContacts": e.engaged_this_week,
            "previousEngagedContacts": e.engaged_last_week, "newContacts": e.new_contacts,
            "enrichedContacts": len(e.enriched_contacts)}


def _facts(job: ResearchData, engagement: Engagement, homepage: Homepage | None, phrases: list[str],
           news: list[NewsItem], scores: list[float]) -> dict[str, Any]:
    return {
        "company": {"id": job.companyId, "name": job.companyName, "domain": job.domain},
        "engagement": {**_engagement_dict(engagement), "enrichedContacts": engagement.enriched_contacts},
        "website": ({"title": homepage.title, "description": homepage.description,
                     "headings": homepage.headings, "keyPhrases": phrases} if homepage else None),
        "news": [{**item.as_dict(), "sentiment": sentiment_label(score)} for item, score in zip(news, scores)],
    }
