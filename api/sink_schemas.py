"""Models of the PostgreSQL sink's figures (in GET /api/streams) and of its dead letters:
rows the database rejected, listed, replayed into their outbox, or purged.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from api.schemas import MAX_IDS, EntryId, Request, Response, Timestamp
from processors.outbox_admin import SinkDeadLetter, SinkFigures


class SinkView(Response):
    enabled: bool = Field(description="DATABASE_URL is set in this API process")
    lag: int = Field(description="outbox entries not yet written to PostgreSQL")
    waitingCompanies: int = Field(description="companies whose outbox the sink has yet to drain")
    deadLetters: int = Field(description="rows PostgreSQL rejected, kept with its reason")
    rowsTotal: dict[str, int] = Field(description="rows written per table, by every sink process")

    @classmethod
    def of(cls, figures: SinkFigures) -> SinkView:
        return cls(**figures.as_dict())


class SinkDeadLetterView(Response):
    id: str = Field(description="the dead letter's entry id; name it to replay or purge this one")
    companyId: str
    table: str
    rowId: str | None
    row: Any
    error: str = Field(description="PostgreSQL's reason: SQLSTATE, error class and message")
    failedAt: Timestamp
    outboxEntry: str

    @classmethod
    def of(cls, letter: SinkDeadLetter) -> SinkDeadLetterView:
        return cls(**letter.as_dict())


class SinkDeadLetterPage(Response):
    items: list[SinkDeadLetterView]
    nextCursor: str | None


class SinkDeadLetterRequest(Request):
    action: Literal["replay", "purge"]
    ids: list[EntryId] | None = Field(None, max_length=MAX_IDS, description="dead-letter ids; omitted: every one")


class SinkReplayResult(Response):
    action: Literal["replay"]
    replayed: list[str] = Field(description="dead letters whose row went back into its company's outbox")


class SinkPurgeResult(Response):
    action: Literal["purge"]
    purged: int
