"""The signal intake: the one check a signal passes on its way in (the SignalData model,
then the configured SIGNAL_TYPES) and its encoding for the signals kind's stream. The API
builds one per app for POST /api/jobs and POST /api/signals; `processors.publish` builds
the SDK's publishers on one.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import Any

from pydantic import ValidationError

from config import Settings
from processors.kinds import SIGNALS
from processors.models import SignalData
from streams.errors import EntryTooLarge, InvalidJob
from streams.signals_sdk import SignalEncoder


@dataclass(frozen=True, slots=True)
class Problem:
    path: tuple[str | int, ...]  # the field, within the signal; () for the signal as a whole
    message: str


class InvalidSignal(ValueError):
    """A signal refused on the way in, with every problem found in it."""

    def __init__(self, problems: list[Problem]) -> None:
        super().__init__("; ".join(f"{'.'.join(map(str, p.path)) or 'signal'}: {p.message}" for p in problems))
        self.problems = problems


class SignalIntake:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.queue = SIGNALS.queue
        self.types = tuple(settings.signal_types)
        self._known = frozenset(self.types)

    def validate(self, value: Any) -> SignalData:
        """`value` as a signal of a configured type; InvalidSignal naming every problem."""
        if isinstance(value, SignalData):
            signal = value
        else:
            try:
                signal = SignalData.model_validate(value)
            except ValidationError as exc:
                raise InvalidSignal([Problem(tuple(e["loc"]), e["msg"])
                                     for e in exc.errors(include_url=False, include_input=False)]) from None
        if signal.signalType not in self._known:
            raise InvalidSignal([Problem(("signalType",), f"unknown signal type {signal.signalType!r}; "
                                                          f"use one of: {', '.join(self.types)}")])
        return signal

    @cached_property
    def encoder(self) -> SignalEncoder:
        """Built on first use: while the signals queue keeps job records (a configuration
        the engine is retiring) it has no wire format, and this raises InvalidJob."""
        return SignalEncoder(self.settings, queue=self.queue, validator=self.validate)

    def encode(self, value: Any) -> tuple[str, str]:
        """The signal's (stream key, data JSON); InvalidSignal when it is invalid or does
        not fit an entry (no partition field); EntryTooLarge past MAX_ENTRY_BYTES."""
        signal = self.validate(value)
        encoder = self.encoder  # outside the try: a queue keeping records is no fault of this signal
        try:
            return encoder.encode(signal)
        except EntryTooLarge:
            raise
        except InvalidJob as exc:
            raise InvalidSignal([Problem((), str(exc))]) from None
