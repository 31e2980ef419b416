"""Typed signal publishers: the streams SDK's publishers validating with `SignalData`
(the model the API uses) and the configured signal types.

    publisher = signal_publisher(streams.connect(settings), settings)
    await publisher.publish_signal({"signalId": "sig_1", "signalType": "Email Open",
                                    "companyId": "comp_1", "data": {}})
"""

from __future__ import annotations

from typing import Any

import redis as sync_redis
from redis.asyncio import Redis

from config import Settings
from processors.models import SignalData
from streams.signals_sdk import SignalPublisher, SyncSignalPublisher


def signal_validator(settings: Settings) -> Any:
    """Validates with SignalData, then refuses a signalType that is not configured."""
    types = frozenset(settings.signal_types)

    def validate(value: Any) -> SignalData:
        signal = SignalData.model_validate(value)
        if signal.signalType not in types:
            raise ValueError(f"signalType: unknown signal type {signal.signalType!r}; use one of: "
                             f"{', '.join(settings.signal_types)}")
        return signal

    return validate


def signal_publisher(redis: Redis, settings: Settings, **kwargs: Any) -> SignalPublisher:
    return SignalPublisher(redis, settings, validator=signal_validator(settings), **kwargs)


def sync_signal_publisher(settings: Settings, redis: sync_redis.Redis | None = None,
                          **kwargs: Any) -> SyncSignalPublisher:
    if redis is None:
        return SyncSignalPublisher.connect(settings, validator=signal_validator(settings), **kwargs)
    return SyncSignalPublisher(redis, settings, validator=signal_validator(settings), **kwargs)
