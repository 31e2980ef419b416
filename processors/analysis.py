"""The built-in analyser: news sentiment with VADER (a lexicon-based scorer), key phrases
from a homepage, and research insights written from gathered facts by explicit rules.
Research uses it when no LLM is configured; news sentiment is always scored here.
Every sentence it writes states a number it was given; nothing is guessed.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from functools import cache
from typing import Literal

from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

Sentiment = Literal["positive", "neutral", "negative"]
POSITIVE_AT = 0.05  # VADER's own recommended cut-offs on the compound score
NEGATIVE_AT = -0.05
NOTABLY_NEGATIVE_AT = -0.3
STEADY_WITHIN_PCT = 10.0  # week-over-week changes smaller than this read as "steady"

_WORD = re.compile(r"[A-Za-z][A-Za-z0-9&'+-]*[A-Za-z0-9+]|[A-Za-z]")
STOPWORDS = frozenset("""
a about above after again all also am an and any are as at be because been before being below
between both but by can could did do does doing down during each few for from further had has
have having he her here hers him his how i if in into is it its itself just me more most my no
nor not now of off on once only or other our ours out over own same she should so some such than
that the their theirs them then there these they this those through to too under until up very
was we were what when where which while who whom why will with would you your yours
home welcome learn click page menu cookie cookies privacy policy login log sign contact us read
copyright rights reserved get started new best top free today now one way make help see find
""".split())


@cache
def _vader() -> SentimentIntensityAnalyzer:
    return SentimentIntensityAnalyzer()  # loads its lexicon once per process


def sentiment_score(text: str) -> float:
    """VADER's compound score, from -1 (most negative) to 1 (most positive)."""
    return float(_vader().polarity_scores(text)["compound"])


def sentiment_label(score: float) -> Sentiment:
    if score >= POSITIVE_AT:
        return "positive"
    if score <= NEGATIVE_AT:
        return "negative"
    return "neutral"


def key_phrases(texts: Iterable[str], *, exclude: Iterable[str] = (), limit: int = 10) -> list[str]:
    """The most frequent two-word phrases and words of `texts`, without stopwords or the
    words of `exclude` (the company's own name). Two-word phrases count double."""
    excluded = STOPWORDS | {w.lower() for text in exclude for w in _WORD.findall(text)}
    counts: Counter[str] = Counter()
    for text in texts:
        words = [w.lower() for w in _WORD.findall(text)]
        for i, word in enumerate(words):
            if word in excluded or len(word) < 3:
                continue
            counts[word] += 1
            if i + 1 < len(words) and words[i + 1] not in excluded and len(words[i + 1]) >= 3:
                counts[f"{word} {words[i + 1]}"] += 2
    chosen: list[str] = []
    for phrase, _ in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])):
        if " " not in phrase and any(phrase in c.split() for c in chosen):
            continue  # the word is already shown inside a phrase
        chosen.append(phrase)
        if len(chosen) == limit:
            break
    return chosen


def percent_change(now: float, before: float) -> float | None:
    """None when there is nothing to compare with (before == 0)."""
    if before == 0:
        return None
    return round((now - before) / before * 100, 1)


# -- research facts and the built-in brief -----------------------------------------------

@dataclass(slots=True)
class Engagement:
    """What the signals say about a company over the last 7 local days and the 7 before."""

    this_week: dict[str, int]  # signal type -> count
    last_week: dict[str, int]
    intent_score: float
    intent_threshold: float
    engaged_this_week: int  # distinct contacts
    engaged_last_week: int
    new_contacts: list[str]  # first engaged within the last 7 days
    enriched_contacts: list[Mapping[str, object]] = field(default_factory=list)


@dataclass(slots=True)
class ScoredNews:
    title: str
    score: float  # VADER compound of title and summary


@dataclass(slots=True)
class Brief:
    summary: str
    insights: list[str]
    sentiment: Sentiment | Literal["unknown"]


def builtin_brief(company: str, engagement: Engagement, weights: Mapping[str, float],
                  news: list[ScoredNews], description: str | None, phrases: list[str]) -> Brief:
    insights = [_engagement_change(engagement)]
    insights += _buying_signals(engagement, weights)
    insights.append(_intent_line(engagement))
    if engagement.new_contacts:
        n = len(engagement.new_contacts)
        insights.append(f"{n} contact{'s' if n != 1 else ''} engaged for the first time in the last 7 days.")
    if engagement.enriched_contacts:
        insights.append(_contacts_line(engagement.enriched_contacts))
    sentiment: Sentiment | Literal["unknown"] = "unknown"
    news_line = "No news items were found in the configured feeds."
    if news:
        mean = sum(item.score for item in news) / len(news)
        sentiment = sentiment_label(mean)
        news_line = (f"{len(news)} news item{'s' if len(news) != 1 else ''}, {sentiment} in tone "
                     f"on average (VADER compound {mean:+.2f}).")
        insights.append(news_line)
        worst = min(news, key=lambda item: item.score)
        if worst.score <= NOTABLY_NEGATIVE_AT:
            insights.append(f"Negative coverage to check: \"{worst.title}\" ({worst.score:+.2f}).")
    if description:
        insights.append(f"The website describes the company as: \"{description}\"")
    if phrases:
        insights.append(f"Website key phrases: {', '.join(phrases[:6])}.")
    summary = f"{company}: {insights[0]} {_intent_line(engagement)} {news_line}"
    return Brief(summary, insights, sentiment)


def _engagement_change(e: Engagement) -> str:
    now, before = sum(e.this_week.values()), sum(e.last_week.values())
    if now == before == 0:
        return "No engagement signals in the last 14 days."
    if before == 0:
        return f"Engagement started: {now} signals in the last 7 days, none in the 7 days before."
    change = percent_change(now, before) or 0.0
    if abs(change) < STEADY_WITHIN_PCT:
        return f"Engagement held steady week over week ({now} signals vs {before})."
    direction = "rose" if change > 0 else "fell"
    return f"Engagement {direction} {abs(change):.0f}% week over week ({now} signals vs {before})."


def _buying_signals(e: Engagement, weights: Mapping[str, float]) -> list[str]:
    """The week's signals of the most heavily weighted types (at least half the top weight)."""
    if not weights:
        return []
    strong = max(weights.values()) / 2
    found = [f"{count} {name}" for name, count in sorted(e.this_week.items(), key=lambda kv: -kv[1])
             if count and weights.get(name, 0) >= strong]
    lines = []
    if found:
        lines.append(f"Strong buying signals in the last 7 days: {', '.join(found)}.")
    if e.this_week:
        top, count = max(e.this_week.items(), key=lambda kv: (kv[1], kv[0]))
        lines.append(f"Most frequent signal in the last 7 days: {top} ({count}).")
    return lines


def _intent_line(e: Engagement) -> str:
    side = "at or above" if e.intent_score >= e.intent_threshold else "below"
    return f"Intent score {e.intent_score:.1f} is {side} the research threshold of {e.intent_threshold:g}."


def _contacts_line(contacts: list[Mapping[str, object]]) -> str:
    titles = sorted({str(c["title"]) for c in contacts if c.get("title")})
    line = f"{len(contacts)} enriched contact{'s' if len(contacts) != 1 else ''}"
    return line + (f", titles include {', '.join(titles[:5])}." if titles else ".")
