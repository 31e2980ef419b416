"""Parse durations ("500ms", "5s", "2m", "1h", "1d" or plain seconds) into float seconds.

Every duration setting, top-level or in a queue's policy row, is typed with one of the
annotated aliases below, so the same spellings work in the environment, TOML and code.
"""

from __future__ import annotations

import math
import re
from typing import Annotated

from annotated_types import Gt
from pydantic import BeforeValidator

UNIT_SECONDS: dict[str, float] = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}

_DURATION = re.compile(r"^(?P<number>[0-9]*\.?[0-9]+)\s*(?P<unit>[a-z]*)$")


def parse_duration(value: str | int | float) -> float:
    """Return `value` in seconds; numbers are seconds, strings may carry a unit suffix."""
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        raise ValueError(f"duration must be seconds or a string like '5s', got {type(value).__name__}")
    if isinstance(value, str):
        return _parse_duration_text(value)
    return _check_seconds(float(value), value)


def _parse_duration_text(text: str) -> float:
    cleaned = text.strip().lower()
    if not cleaned:
        raise ValueError("duration is empty; use seconds or a string like '500ms', '5s', '2m', '1h', '1d'")
    if cleaned.startswith("-"):
        raise ValueError(f"duration {text!r} is negative")
    match = _DURATION.match(cleaned)
    if match is None:
        raise ValueError(f"duration {text!r} is not a number with an optional unit (ms, s, m, h, d)")
    unit = match["unit"] or "s"
    if unit not in UNIT_SECONDS:
        raise ValueError(f"duration {text!r} has unknown unit {unit!r}; use ms, s, m, h or d")
    return _check_seconds(float(match["number"]) * UNIT_SECONDS[unit], text)


def _check_seconds(seconds: float, original: object) -> float:
    if math.isnan(seconds) or math.isinf(seconds):
        raise ValueError(f"duration {original!r} is not a finite number")
    if seconds < 0:
        raise ValueError(f"duration {original!r} is negative")
    return seconds


Seconds = Annotated[float, BeforeValidator(parse_duration)]
"""A duration of zero or more seconds."""

PositiveSeconds = Annotated[float, BeforeValidator(parse_duration), Gt(0)]
"""A duration of more than zero seconds."""
