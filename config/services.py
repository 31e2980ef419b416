"""Settings of the outside services the processors use (LLM, news feeds, people data,
SMTP, time zone) and of the signal analytics (types, weights, intent, triggers).
Mixed into `Settings`; each env name is the field name upper-cased (LLM_BASE_URL).
"""

from __future__ import annotations

import string
from collections.abc import Mapping
from typing import Annotated, Any
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, BeforeValidator, Field, SecretStr, ValidationInfo, field_validator
from pydantic_settings import NoDecode

from config.durations import PositiveSeconds

DAY = 86400.0

DEFAULT_SIGNAL_WEIGHTS: dict[str, float] = {
    "Email Open": 1.0,
    "Email Click": 2.0,
    "Email Reply": 4.0,
    "Website Visit": 1.0,
    "Content Download": 3.0,
    "Demo Request": 10.0,
    "Meeting Booked": 8.0,
    "Job Change": 3.0,
    "Funding": 5.0,
    "Hiring": 2.0,
}
DEFAULT_SIGNAL_WEIGHT = 1.0  # a type added to SIGNAL_TYPES without a weight of its own
FEED_PLACEHOLDERS = frozenset({"company", "domain"})

def _split_commas(value: Any) -> Any:
    if isinstance(value, str):
        return tuple(part.strip() for part in value.split(",") if part.strip())
    return value


CommaList = Annotated[tuple[str, ...], NoDecode, BeforeValidator(_split_commas)]
"""A comma-separated list in the environment ("a, b"), a list in TOML and code."""


class ServiceFields(BaseModel):
    """Outside services are optional: a processor without one derives what it honestly
    can and marks the rest unavailable (see README, "Processors")."""

    # LLM: OpenAI-compatible chat completions; research uses it when URL and model are set.
    llm_base_url: str | None = None  # e.g. https://api.openai.com/v1 (".../chat/completions" is appended)
    llm_api_key: SecretStr | None = None
    llm_model: str | None = Field(default=None, validate_default=True)
    llm_timeout: PositiveSeconds = 60.0

    # News: RSS/Atom feed URLs with optional {company} and {domain} placeholders.
    news_feed_urls: CommaList = ()
    news_max_items: Annotated[int, Field(ge=1, le=200)] = 20
    feed_max_bytes: Annotated[int, Field(ge=1024)] = 2_000_000

    # The company homepage research reads; {domain} is the job's domain.
    homepage_url: str = "https://{domain}/"
    homepage_max_bytes: Annotated[int, Field(ge=1024)] = 1_000_000

    # People data: GET {PEOPLE_API_URL}?email=...&linkedin=... with a bearer key.
    people_api_url: str | None = None
    people_api_key: SecretStr | None = None
    provider_max_bytes: Annotated[int, Field(ge=1024)] = 1_000_000  # LLM and people-data answers

    http_timeout: PositiveSeconds = 10.0  # homepage, feeds, people data: whole request
    # Off in production: a job's domain or a redirect must not make the worker fetch
    # internal addresses (homepage and feeds; processors.outbound).
    fetch_allow_private: bool = False
    mx_lookup_timeout: PositiveSeconds = 3.0

    # SMTP for e-mailed reports; no SMTP_HOST means reports are stored but not sent.
    smtp_host: str | None = None
    smtp_port: Annotated[int, Field(ge=1, le=65535)] = 587
    smtp_username: str | None = None
    smtp_password: SecretStr | None = None
    smtp_starttls: bool = True
    smtp_implicit_tls: bool = False  # TLS from the first byte (usually port 465)
    smtp_from: str | None = Field(default=None, validate_default=True)
    smtp_timeout: PositiveSeconds = 30.0

    # Report periods, report days and cron schedules are in this time zone.
    timezone: str = "UTC"
    schedule_poll_interval: PositiveSeconds = 5.0  # how often workers look for due report schedules

    # Signals.
    signal_types: CommaList = tuple(DEFAULT_SIGNAL_WEIGHTS)
    signal_weights: dict[str, float] = Field(default_factory=dict, validate_default=True)  # type -> weight
    intent_half_life: PositiveSeconds = 7 * DAY
    intent_threshold: Annotated[float, Field(gt=0)] = 25.0
    intent_trigger_cooldown: PositiveSeconds = DAY  # research enqueued at most once per company per this
    job_change_cooldown: PositiveSeconds = DAY  # enrichment enqueued at most once per contact per this
    signal_dedupe_window: PositiveSeconds = 7 * DAY  # a signalId seen again within this is a duplicate
    signal_history_max: Annotated[int, Field(ge=1)] = 1000  # newest signals kept per company
    signal_counts_retention: PositiveSeconds = 400 * DAY  # per-day counters expire this long after their day
    records_kept_per_company: Annotated[int, Field(ge=1)] = 50  # research and report records each

    @field_validator("llm_base_url", "people_api_url", "homepage_url")
    @classmethod
    def _check_http_url(cls, url: str | None) -> str | None:
        if url is None:
            return None
        parts = urlsplit(url.strip())
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("must be an http:// or https:// URL with a host")
        return url.strip()

    @field_validator("llm_model")
    @classmethod
    def _model_with_url(cls, model: str | None, info: ValidationInfo) -> str | None:
        if model is not None and not model.strip():
            model = None
        if info.data.get("llm_base_url") and model is None:
            raise ValueError("required when LLM_BASE_URL is set")
        return model.strip() if model else None

    @field_validator("news_feed_urls")
    @classmethod
    def _check_feed_urls(cls, urls: tuple[str, ...]) -> tuple[str, ...]:
        for url in urls:
            try:
                names = {name for _, name, _, _ in string.Formatter().parse(url) if name is not None}
            except ValueError:
                raise ValueError(f"{url!r} has an unbalanced brace") from None
            if names - FEED_PLACEHOLDERS:
                raise ValueError(f"{url!r}: only {{company}} and {{domain}} placeholders are allowed")
            cls._check_http_url(url.format(company="x", domain="x.com"))
        return urls

    @field_validator("homepage_url")
    @classmethod
    def _homepage_names_domain(cls, url: str) -> str:
        if "{domain}" not in url:
            raise ValueError("must contain the {domain} placeholder")
        return url

    @field_validator("smtp_from")
    @classmethod
    def _from_with_host(cls, sender: str | None, info: ValidationInfo) -> str | None:
        if info.data.get("smtp_host") and not sender:
            raise ValueError("required when SMTP_HOST is set")
        return sender

    @field_validator("timezone")
    @classmethod
    def _check_timezone(cls, name: str) -> str:
        try:
            ZoneInfo(name)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {name!r}; use an IANA name such as Europe/Berlin") from None
        return name

    @field_validator("signal_types")
    @classmethod
    def _check_signal_types(cls, types: tuple[str, ...]) -> tuple[str, ...]:
        if not types:
            raise ValueError("at least one signal type is needed")
        if len(set(types)) != len(types):
            raise ValueError("a signal type is listed twice")
        return types

    @field_validator("signal_weights", mode="before")
    @classmethod
    def _complete_weights(cls, weights: Any, info: ValidationInfo) -> Any:
        # Overrides name only the types they change; the rest keep their default weight.
        if not isinstance(weights, Mapping) or "signal_types" not in info.data:
            return weights
        types = info.data["signal_types"]
        unknown = [name for name in weights if name not in types]
        if unknown:
            raise ValueError(f"{', '.join(map(repr, unknown))} not in SIGNAL_TYPES")
        return {t: weights.get(t, DEFAULT_SIGNAL_WEIGHTS.get(t, DEFAULT_SIGNAL_WEIGHT)) for t in types}

    @field_validator("signal_weights")
    @classmethod
    def _weights_not_negative(cls, weights: dict[str, float]) -> dict[str, float]:
        if any(w < 0 for w in weights.values()):
            raise ValueError("weights must not be negative")
        return weights

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    @property
    def llm_configured(self) -> bool:
        return self.llm_base_url is not None

    @property
    def people_api_configured(self) -> bool:
        return self.people_api_url is not None

    @property
    def smtp_configured(self) -> bool:
        return self.smtp_host is not None
