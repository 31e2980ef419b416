"""Structural rules that keep the code base honest: import direction, no environment
reads outside config/, every Lua script loads, job ids have their promised shape."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest
from redis.asyncio import Redis

from streams.job import new_job_id
from streams.keys import JOB_ID_RE, QueueKeys, queue_of_job
from streams.scripts import SCRIPT_NAMES, Scripts, script_source

ROOT = Path(__file__).parents[1]
LAYERS = ["config", "streams", "processors", "sink", "api", "cli"]  # each may import only those before it


def _imports(package: str) -> set[str]:
    found = set()
    for path in (ROOT / package).rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                found.add(node.module.split(".")[0])
            elif isinstance(node, ast.Import):
                found.update(alias.name.split(".")[0] for alias in node.names)
    return found


@pytest.mark.parametrize("package", LAYERS)
def test_imports_point_one_way(package: str) -> None:
    allowed = set(LAYERS[: LAYERS.index(package) + 1])
    assert not (_imports(package) & set(LAYERS)) - allowed


def test_only_config_reads_the_environment() -> None:
    pattern = re.compile(r"os\.environ|getenv\(")
    offenders = [str(p.relative_to(ROOT)) for pkg in ("streams", "processors", "sink", "api", "cli")
                 for p in (ROOT / pkg).rglob("*.py") if pattern.search(p.read_text())]
    assert offenders == []


async def test_every_script_loads(engine_redis: Redis) -> None:
    await Scripts(engine_redis).load()
    for name in SCRIPT_NAMES:
        assert "--!include" not in script_source(name)


def test_scripts_build_no_key_of_their_own() -> None:
    # Keys reach Lua through KEYS; the only names built in Lua append a job id to a
    # prefix that arrived through KEYS (same hash tag, same slot).
    for name in SCRIPT_NAMES:
        source = script_source(name)
        assert "{" + "tg" not in source and ":job:" not in source and ":stream:" not in source


def test_job_ids_name_their_queue_and_are_url_safe() -> None:
    ids = [new_job_id("research") for _ in range(1000)]
    assert len(set(ids)) == 1000
    for job_id in ids:
        assert JOB_ID_RE.match(job_id) and queue_of_job(job_id) == "research"
        assert re.fullmatch(r"research-[0-9A-Z]{26}", job_id)
    times = [job_id[9:19] for job_id in ids]  # the ULID's millisecond part
    assert times == sorted(times)


@pytest.mark.parametrize("bad", ["", "research", "-abc", "Research-1", "research-a/b", "research-{x}",
                                 "research-" + "a" * 101])
def test_malformed_job_ids_name_no_queue(bad: str) -> None:
    assert queue_of_job(bad) is None


def test_every_key_of_a_queue_shares_its_hash_tag() -> None:
    k = QueueKeys("tg", "research")
    names = [*k.lanes, k.job("research-1"), k.logs("research-1"), k.inflight, k.scheduled, k.dead,
             k.events, k.meta, k.limiter, k.idempotency_prefix, k.state_index("waiting")]
    assert all(name.startswith("{tg:research}:") for name in names)
