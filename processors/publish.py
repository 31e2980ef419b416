"""Typed signal publishers: the streams SDK's publishers on the signals kind's queue,
validating with the signal intake (SignalData and the configured signal types), as the
API does.

    publisher = signal_publisher(streams.connect(settings), settings)
    await publisher.publish_signal({"signalId": "sig_1", "signalType": "Email Open",
                                    "companyId": "comp_1", "data": {}})
"""

from __future__ import annotations

from typing import Any

import redis as sync_redis
from redis.asyncio import Redis

from config import Settings
from processors.intake import SignalIntake
from streams.signals_sdk import SignalPublisher, SyncSignalPublisher


def signal_publisher(redis: Redis, settings: Settings, *, intake: SignalIntake | None = None,
                     **kwargs: Any) -> SignalPublisher:
    """`intake`: one already built (the API's); else one is built for this publisher."""
    intake = intake or SignalIntake(settings)
    return SignalPublisher(redis, settings, queue=intake.queue, validator=intake.validate, **kwargs)


def sync_signal_publisher(settings: Settings, redis: sync_redis.Redis | None = None, *,
                          intake: SignalIntake | None = None, **kwargs: Any) -> SyncSignalPublisher:
    intake = intake or SignalIntake(settings)
    if redis is None:
        return SyncSignalPublisher.connect(settings, queue=intake.queue, validator=intake.validate, **kwargs)
    return SyncSignalPublisher(redis, settings, queue=intake.queue, validator=intake.validate, **kwargs)
