"""Asks an OpenAI-compatible chat-completions endpoint for a JSON answer and validates
it against a pydantic model. An answer that does not parse or validate gets one repair
request (the model sees its answer and the errors); a second miss fails the attempt.
Research calls `ask_json` with `ResearchBrief`.
"""

from __future__ import annotations

import re
from typing import Any, Literal, TypeVar

import aiohttp
import orjson
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from config import Settings
from processors.errors import ProviderAnswerInvalid, ProviderRejected
from processors.fetch import client_session, provider_json
from processors.outbound import shown_url

M = TypeVar("M", bound=BaseModel)
_FENCE = re.compile(r"^\s*```(?:json)?\s*(.*?)\s*```\s*$", re.DOTALL)
MAX_ERRORS_SHOWN = 10


class ResearchBrief(BaseModel):
    """What the LLM must return for a research job."""

    model_config = ConfigDict(extra="ignore")

    summary: str = Field(min_length=1, max_length=4000, description="three to six sentences, facts only")
    insights: list[str] = Field(max_length=12, description="specific, each one sentence")
    competitors: list[str] = Field(default_factory=list, max_length=20,
                                   description="only companies the facts name or clearly imply; else empty")
    sentiment: Literal["positive", "neutral", "negative"] = Field(description="overall tone of the news")


class Llm:
    def __init__(self, settings: Settings) -> None:
        if settings.llm_base_url is None or settings.llm_model is None:
            raise ValueError("LLM_BASE_URL and LLM_MODEL are not set")
        self.url = settings.llm_base_url.rstrip("/") + "/chat/completions"
        self.model = settings.llm_model
        self.timeout = settings.llm_timeout
        self.max_bytes = settings.provider_max_bytes
        self.headers = {"Content-Type": "application/json"}
        if settings.llm_api_key is not None:
            self.headers["Authorization"] = f"Bearer {settings.llm_api_key.get_secret_value()}"

    async def ask_json(self, system: str, facts: Any, schema: type[M]) -> M:
        """The model's answer to `facts` (sent as JSON) as a validated `schema`."""
        messages = [
            {"role": "system", "content": f"{system}\n\nAnswer with one JSON object and nothing else. "
                                          f"It must match this JSON Schema:\n"
                                          f"{orjson.dumps(schema.model_json_schema()).decode()}"},
            {"role": "user", "content": orjson.dumps(facts).decode()},
        ]
        async with client_session(headers=self.headers) as session:
            answer = await self._complete(session, messages)
            try:
                return _parse(answer, schema)
            except ProviderAnswerInvalid as first:
                messages += [
                    {"role": "assistant", "content": answer},
                    {"role": "user", "content": f"That answer is invalid: {first}. Reply with the "
                                                "corrected JSON object only."},
                ]
                answer = await self._complete(session, messages)
                try:
                    return _parse(answer, schema)
                except ProviderAnswerInvalid as second:
                    raise ProviderAnswerInvalid(f"LLM answer still invalid after one repair: {second}") from None

    async def _complete(self, session: aiohttp.ClientSession, messages: list[dict[str, str]]) -> str:
        body = {"model": self.model, "messages": messages, "temperature": 0,
                "response_format": {"type": "json_object"}}
        status, reply = await provider_json(session, "POST", self.url, name="LLM", limit=self.max_bytes,
                                            timeout=self.timeout, data=orjson.dumps(body))
        if status == 404:
            raise ProviderRejected(f"LLM endpoint {shown_url(self.url)} not found (HTTP 404)")
        try:
            content = reply["choices"][0]["message"]["content"]
        except (KeyError, IndexError, TypeError):
            raise ProviderAnswerInvalid("LLM reply has no choices[0].message.content") from None
        if not isinstance(content, str):
            raise ProviderAnswerInvalid("LLM reply content is not text")
        return content


def _parse(answer: str, schema: type[M]) -> M:
    fenced = _FENCE.match(answer)
    text = fenced.group(1) if fenced else answer
    try:
        return schema.model_validate_json(text)
    except ValidationError as exc:
        errors = "; ".join(f"{'.'.join(map(str, e['loc'])) or '(root)'}: {e['msg']}"
                           for e in exc.errors()[:MAX_ERRORS_SHOWN])
        raise ProviderAnswerInvalid(errors) from None
