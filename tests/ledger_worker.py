"""A worker process of the ledger test (tests/test_ledger.py):

    python tests/ledger_worker.py SETTINGS_JSON

SETTINGS_JSON holds `Settings` keyword arguments. The signals queue runs the real signals
processor (its effects: a company's history, counters and "seen" markers, once per
signalId); the research queue runs a stand-in handler that takes a few milliseconds
(the engine's records are what the ledger reads of it: one completion per job).
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import random
import sys

from config import Settings
from processors import build_handlers
from streams import JobContext, connect, run_workers


async def research(ctx: JobContext) -> dict[str, int]:
    await asyncio.sleep(random.uniform(0.002, 0.02))  # long enough for a SIGKILL to land mid-run
    return {"pid": os.getpid()}


async def main(settings: Settings) -> None:
    redis = connect(settings)
    try:
        handlers = {**build_handlers(settings, redis, ["signals"]), "research": research}
        await run_workers(settings, handlers)
    finally:
        await redis.aclose()


if __name__ == "__main__":
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr,
                        format=f"ledger worker {os.getpid()} %(levelname)s %(name)s %(message)s")
    asyncio.run(main(Settings(**json.loads(sys.argv[1]))))
