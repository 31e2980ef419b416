"""The README's redis-cli XADD example of a signal, taken from README.md and run as
written against a Redis of its own (its key carries the default prefix), then a signals
worker in burst mode: GET /api/companies/{companyId} counts the signal today."""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import orjson
import redis.asyncio as aioredis
from conftest import TOKENS, VIEWER_TOKEN, StartApi
from redis_server import RedisServerFactory
from test_cli import REPO_ROOT, clean_env

from config import Settings
from processors.kinds import SIGNALS
from streams.keys import QueueKeys

README = Path(REPO_ROOT) / "README.md"
WORKER_TIMEOUT_S = 60


def readme_xadd() -> list[str]:
    """The README's `redis-cli ... XADD` command as argv, continuation lines joined."""
    found = re.search(r"^redis-cli [^\n]*XADD (?:[^\n]*\\\n)*[^\n]*", README.read_text(), re.MULTILINE)
    assert found, "README.md has no redis-cli XADD example"
    return shlex.split(found.group(0).replace("\\\n", " "))


async def test_the_readme_xadd_example_shows_in_the_company_overview(
        start_api: StartApi, redis_server_factory: RedisServerFactory) -> None:
    argv = readme_xadd()
    at = argv.index("XADD")
    # Aimed at the embedded Redis `make run` starts, under the default key prefix.
    assert argv[1:at] == ["-p", str(Settings.model_fields["embedded_redis_port"].default)]
    key, entry_id, field, value = argv[at + 1:]
    signal = orjson.loads(value)
    assert "timestamp" not in signal["data"]  # so it counts when processed: today

    server = redis_server_factory(appendonly=False)
    settings = Settings(redis_url=server.url, api_tokens=TOKENS)
    assert key == QueueKeys(settings.key_prefix, SIGNALS.queue).lane("normal")
    command = argv[at:]
    redis_cli = shutil.which("redis-cli")
    if redis_cli is not None:
        subprocess.run([redis_cli, "-p", str(server.port), *command], check=True, capture_output=True)
    else:  # the same command, as redis-cli would send it
        async with aioredis.Redis.from_url(server.url) as client:
            await client.execute_command(*command)

    worker = subprocess.run([sys.executable, "-m", "cli.main", "workers", "--queues", SIGNALS.queue, "--burst"],
                            cwd=REPO_ROOT, env={**clean_env(), "REDIS_URL": server.url}, capture_output=True,
                            text=True, timeout=WORKER_TIMEOUT_S)
    assert worker.returncode == 0, worker.stderr

    api = await start_api(settings)
    status, company = await api.get(f"/api/companies/{signal['companyId']}", token=VIEWER_TOKEN)
    assert status == 200, company
    analytics = company["analytics"]
    assert analytics["signals"] == 1 and analytics["byType"] == {signal["signalType"]: 1}
    assert analytics["byDay"][-1] == {"date": analytics["to"], "count": 1}
    assert company["intentScore"] > 0
