"""Batches successful outcomes: every run that finishes while a batch is in flight
joins the next one, so many jobs finishing together cost one round trip.
"""

from __future__ import annotations

import asyncio
import logging

from streams.outage import Outage
from streams.delivery import Delivery
from streams.scripts import QueueScripts

MAX_BATCH = 200
log = logging.getLogger(__name__)


class Completer:
    def __init__(self, scripts: QueueScripts, consumer: str) -> None:
        self._scripts = scripts
        self._consumer = consumer
        self._pending: list[tuple[Delivery, str, asyncio.Future[bool]]] = []
        self._wake = asyncio.Event()
        self._outage = Outage(log, f"{scripts.queue} completions")

    async def complete(self, delivery: Delivery, value: str) -> bool:
        """Records a success; False when the entry had been taken over (fenced out)."""
        future: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self._pending.append((delivery, value, future))
        self._wake.set()
        return await future

    async def run(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self._pending:
                batch, self._pending = self._pending[:MAX_BATCH], self._pending[MAX_BATCH:]
                results = await self._record(batch)
                for (_, _, future), recorded in zip(batch, results):
                    if not future.done():
                        future.set_result(recorded)

    async def _record(self, batch: list[tuple[Delivery, str, asyncio.Future[bool]]]) -> list[bool]:
        runs = [(delivery, value) for delivery, value, _ in batch]
        return await self._outage.retry(lambda: self._scripts.complete(self._consumer, runs))
