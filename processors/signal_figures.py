"""A company's signal figures as the records keep them: one local day's counts and
intent snapshot, and the decay rule the intent score follows between snapshots.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date


def decayed(score: float, from_ms: int, to_ms: int, half_life_s: float) -> float:
    """`score` as of `from_ms`, halved every half-life until `to_ms`. record_signals.lua
    applies the same rule when it adds a signal."""
    if to_ms <= from_ms:
        return score
    return score * 2 ** (-(to_ms - from_ms) / (half_life_s * 1000))


@dataclass(frozen=True, slots=True)
class DayFigures:
    day: date
    counts: dict[str, int]  # signal type -> signals that day
    intent: tuple[float, int] | None  # the score's last snapshot that day: (score, at ms)

    @property
    def total(self) -> int:
        return sum(self.counts.values())
