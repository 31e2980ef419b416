"""The people-data provider: `GET {PEOPLE_API_URL}?email=...&linkedinUrl=...` with
`Authorization: Bearer {PEOPLE_API_KEY}`, answering a JSON object with any of `title`,
`company` (a name, or an object with `name`) and `skills` (a list of strings); 404 means
no match. 429 and 5xx fail the attempt (ProviderUnavailable). Enrichment calls `lookup`.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError, field_validator

from config import Settings
from processors.errors import ProviderAnswerInvalid
from processors.fetch import USER_AGENT, client_session, provider_json

MAX_SKILLS = 50


class Person(BaseModel):
    model_config = ConfigDict(extra="ignore", str_strip_whitespace=True)

    title: str | None = None
    company: str | None = None
    skills: list[str] = []

    @field_validator("company", mode="before")
    @classmethod
    def _company_name(cls, value: Any) -> Any:
        return value.get("name") if isinstance(value, dict) else value

    @field_validator("skills")
    @classmethod
    def _clean_skills(cls, skills: list[str]) -> list[str]:
        unique = list(dict.fromkeys(s.strip() for s in skills if s.strip()))
        return unique[:MAX_SKILLS]


class PeopleApi:
    def __init__(self, settings: Settings) -> None:
        if settings.people_api_url is None:
            raise ValueError("PEOPLE_API_URL is not set")
        self.url = settings.people_api_url
        self.timeout = settings.http_timeout
        self.max_bytes = settings.provider_max_bytes
        self.headers = {"User-Agent": USER_AGENT, "Accept": "application/json"}
        if settings.people_api_key is not None:
            self.headers["Authorization"] = f"Bearer {settings.people_api_key.get_secret_value()}"

    async def lookup(self, *, email: str | None, linkedin_url: str | None) -> Person | None:
        """The provider's match for the contact, or None when it has none."""
        params = {name: value for name, value in (("email", email), ("linkedinUrl", linkedin_url)) if value}
        async with client_session(headers=self.headers) as session:
            status, body = await provider_json(session, "GET", self.url, name="people-data provider",
                                               limit=self.max_bytes, timeout=self.timeout, params=params)
        if status == 404 or not body:
            return None
        try:
            return Person.model_validate(body)
        except ValidationError as exc:
            raise ProviderAnswerInvalid(f"people-data provider answer: {exc.errors()[0]['msg']}") from None
