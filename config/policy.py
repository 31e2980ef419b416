"""The per-queue policy record: retries, backoff, rate limit, concurrency, retention, lanes.

Queues differ only by their `QueuePolicy` row; the worker reads every knob from it.
Rows are frozen pydantic models, so the same spellings parse from env, TOML and code.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from config.durations import PositiveSeconds, Seconds, parse_duration

RATE_WINDOW_WORDS: dict[str, float] = {
    **dict.fromkeys(("s", "sec", "secs", "second", "seconds"), 1.0),
    **dict.fromkeys(("m", "min", "mins", "minute", "minutes"), 60.0),
    **dict.fromkeys(("h", "hr", "hour", "hours"), 3600.0),
    **dict.fromkeys(("d", "day", "days"), 86400.0),
}
NO_LIMIT_WORDS = frozenset({"", "none"})
STRICT_LANES_WORDS = frozenset({"", "none", "strict"})
LANES = ("high", "normal", "low")
MAX_PARTITIONS = 256


class RateLimit(BaseModel):
    """At most `max` jobs start per window of `per` seconds, across all workers."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    max: Annotated[int, Field(ge=1)]
    per: PositiveSeconds

    @model_validator(mode="before")
    @classmethod
    def _from_text(cls, value: Any) -> Any:
        if isinstance(value, str):
            return _parse_rate_text(value)
        return value

    def __str__(self) -> str:
        return f"{self.max}/{_format_seconds(self.per)}s"


def _parse_rate_text(text: str) -> dict[str, Any]:
    """Split "10/min" or "5/500ms" into the model's fields."""
    count, slash, window = text.strip().lower().partition("/")
    if not slash or not count.strip().isdigit():
        raise ValueError(f"rate limit {text!r} must look like '10/min', '20/hour' or '5/2s' (or 'none')")
    window = window.strip()
    per = RATE_WINDOW_WORDS.get(window)
    return {"max": int(count), "per": per if per is not None else parse_duration(window)}


def _format_seconds(seconds: float) -> str:
    return str(int(seconds)) if seconds.is_integer() else repr(seconds)


class QueuePolicy(BaseModel):
    """How one queue runs its jobs; see the field comments for units and limits."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    attempts: Annotated[int, Field(ge=1)]  # handler failures allowed before dead-lettering
    backoff: Literal["exponential", "fixed"]
    backoff_delay: Seconds  # base wait before a retry
    rate_limit: RateLimit | None  # None: no limit
    concurrency: Annotated[int, Field(ge=1)]  # jobs running at once per worker
    timeout: PositiveSeconds  # an attempt running longer fails
    keep_completed: Annotated[int, Field(ge=0)]  # completed job records kept
    keep_failed: Annotated[int, Field(ge=0)]  # failed job records kept
    lock_timeout: PositiveSeconds = 30.0  # lease after which a silent worker's entry is reclaimed
    max_stalls: Annotated[int, Field(ge=0)] = 3  # crash redeliveries allowed before dead-lettering
    lane_weights: tuple[int, int, int] | None = None  # (high, normal, low); None: strict priority
    partitions: Annotated[int, Field(ge=1, le=MAX_PARTITIONS)] = 1  # streams the queue is split over
    partition_by: str | None = None  # the data field whose value picks an entry's partition
    records: bool = True  # a job record per job; False: the fast path (entries carry their data)
    batch_size: Annotated[int, Field(ge=1, le=10_000)] = 100  # entries read per call on the fast path

    @field_validator("backoff", mode="before")
    @classmethod
    def _lower_backoff(cls, value: Any) -> Any:
        return value.strip().lower() if isinstance(value, str) else value

    @field_validator("rate_limit", mode="before")
    @classmethod
    def _no_limit(cls, value: Any) -> Any:
        if isinstance(value, str) and value.strip().lower() in NO_LIMIT_WORDS:
            return None
        return value

    @field_validator("lane_weights", mode="before")
    @classmethod
    def _parse_lane_weights(cls, value: Any) -> tuple[int, int, int] | None:
        return parse_lane_weights(value)

    @model_validator(mode="after")
    def _partitioned_fast_path_only(self) -> QueuePolicy:
        # A job id names its queue, not its partition: only entries that carry their
        # data (no job record to look up by id) can be spread over partitions.
        if self.partitions > 1 and self.records:
            raise ValueError("partitions > 1 needs records = false (a queue on the fast path)")
        if self.partitions > 1 and not self.partition_by:
            raise ValueError("partitions > 1 needs partition_by, the data field that routes an entry "
                             "(entries with the same value stay in order)")
        return self

    def backoff_for(self, failures: int) -> float:
        """Seconds to wait before retry number `failures` (1 for the first retry)."""
        if failures < 1:
            raise ValueError(f"failures must be >= 1, got {failures}")
        if self.backoff == "fixed":
            return self.backoff_delay
        return self.backoff_delay * 2 ** (failures - 1)


def parse_lane_weights(value: Any) -> tuple[int, int, int] | None:
    """Read "6:3:1", [6, 3, 1] or "strict" (None) into (high, normal, low) weights."""
    if value is None:
        return None
    if isinstance(value, str):
        if value.strip().lower() in STRICT_LANES_WORDS:
            return None
        parts: list[Any] = value.split(":")
    elif isinstance(value, (list, tuple)):
        parts = list(value)
    else:
        raise ValueError("lane weights must be 'high:normal:low' such as '6:3:1', three integers, or 'strict'")
    if len(parts) != len(LANES):
        raise ValueError(f"lane weights need exactly 3 values (high:normal:low), got {len(parts)}")
    high, normal, low = (_lane_weight(part) for part in parts)
    if high == normal == low == 0:
        raise ValueError("at least one lane weight must be greater than 0")
    return high, normal, low


def _lane_weight(part: Any) -> int:
    if isinstance(part, str) and part.strip().isdigit():
        return int(part)
    if isinstance(part, int) and not isinstance(part, bool) and part >= 0:
        return part
    raise ValueError(f"lane weight {part!r} is not a whole number >= 0")
