"""Configuration traps around Redis (issue 13, finding 9): REDIS_USERNAME/REDIS_PASSWORD
beside a REDIS_URL are merged into it (the URL's own credentials win, with a warning),
against a real password-protected server; TLS settings that skip verification warn at
every start; a Redis older than required is refused with its version, as exit 2."""

from __future__ import annotations

import logging
from collections.abc import Callable

import pytest
import redis
from redis.exceptions import AuthenticationError, ResponseError
from redis_server import RedisServerFactory
from test_cli import Run, tgjobs  # noqa: F401  (fixture)

import streams.server_version
from aiohttp import web
from api import create_app
from cli.common import EXIT_USAGE, CliError
from cli.processes import consume, run_checked, warn_at_start
from config import Settings
from streams import connect
from streams.server_version import RedisTooOld, check_redis_version

PASSWORD = "s3cret/with@odd:chars"


def protected(redis_server_factory: RedisServerFactory) -> str:
    """A private server that asks for PASSWORD (set once it answers: the start waits for
    a PING without one); its URL, which carries none."""
    server = redis_server_factory(appendonly=False)
    client = redis.Redis.from_url(server.url)
    try:
        client.config_set("requirepass", PASSWORD)
    finally:
        client.close()
    return server.url


async def test_password_beside_the_url_is_used(redis_server_factory: RedisServerFactory, key_prefix: str) -> None:
    url = protected(redis_server_factory)
    assert "@" not in url
    settings = Settings(redis_url=url, redis_password=PASSWORD, key_prefix=key_prefix)
    assert PASSWORD not in settings.redacted_redis_url()
    client = connect(settings)
    try:
        assert await client.ping()
        await client.execute_command("ACL", "SETUSER", "tgjobs", "on", f">{PASSWORD}", "~*", "+@all")
    finally:
        await client.aclose()
    as_user = connect(Settings(redis_url=url, redis_username="tgjobs", redis_password=PASSWORD))
    try:
        assert await as_user.acl_whoami() == "tgjobs"
    finally:
        await as_user.aclose()

    # The URL's own credentials win (here wrong ones): REDIS_PASSWORD is not used, and a warning says so.
    host_port = url.removeprefix("redis://")
    wrong = Settings(redis_url=f"redis://default:wrong@{host_port}", redis_password=PASSWORD)
    assert wrong.start_warnings() == ["REDIS_URL carries credentials of its own: REDIS_USERNAME/REDIS_PASSWORD "
                                      "are not used"]
    client = connect(wrong)
    try:
        with pytest.raises((AuthenticationError, ResponseError)):
            await client.ping()
    finally:
        await client.aclose()


def test_the_cli_runs_with_password_beside_the_url(redis_server_factory: RedisServerFactory, tgjobs: Run) -> None:
    done = tgjobs("status", env={"REDIS_URL": protected(redis_server_factory), "REDIS_PASSWORD": PASSWORD})
    assert done.returncode == 0, done.stderr
    assert PASSWORD not in done.stdout + done.stderr


@pytest.mark.parametrize("query, expected", [
    ("ssl_cert_reqs=none", ["ssl_cert_reqs=none"]),
    ("ssl_check_hostname=False", ["ssl_check_hostname=false"]),
    ("ssl_cert_reqs=NONE&ssl_check_hostname=0", ["ssl_cert_reqs=none", "ssl_check_hostname=false"]),
    ("ssl_cert_reqs=required&ssl_check_hostname=true", []),
])
def test_tls_without_verification_warns_at_every_start(caplog: pytest.LogCaptureFixture, query: str,
                                                       expected: list[str]) -> None:
    settings = Settings(redis_url=f"rediss://redis.example:6380/0?{query}")
    with caplog.at_level(logging.WARNING):
        warn_at_start(settings)
    assert len(caplog.records) == len(expected)
    for record, name in zip(caplog.records, expected):
        assert record.levelno == logging.WARNING and name in record.getMessage()


@pytest.fixture
def requires_redis_99(monkeypatch: pytest.MonkeyPatch) -> None:
    """No Redis older than 7.0 is installed here: the requirement is raised above the
    real server's version instead, so the real INFO reply is what gets refused."""
    monkeypatch.setattr(streams.server_version, "REQUIRED_REDIS", (99, 0))


async def test_the_real_server_meets_the_requirement(make_settings: Callable[..., Settings]) -> None:
    client = connect(make_settings())
    try:
        version = await check_redis_version(client)
    finally:
        await client.aclose()
    assert version is not None and int(version.split(".")[0]) >= 7


@pytest.mark.usefixtures("requires_redis_99")
async def test_a_redis_older_than_required_is_refused_at_start(make_settings: Callable[..., Settings]) -> None:
    settings = make_settings()
    client = connect(settings)
    try:
        version = str((await client.info("server"))["redis_version"])
        with pytest.raises(RedisTooOld, match=f"Redis {version} is older than 99.0"):
            await check_redis_version(client)
    finally:
        await client.aclose()
    with pytest.raises(RedisTooOld, match=version):
        await consume(settings, ["research"], burst=True)  # the workers' start
    runner = web.AppRunner(create_app(settings))
    with pytest.raises(RedisTooOld, match=version):  # the API's start
        await runner.setup()


def test_too_old_is_a_configuration_error_exit_2() -> None:
    async def start() -> None:
        raise RedisTooOld("Redis 6.2.14 is older than 7.0, the oldest tgjobs runs on; upgrade Redis")

    with pytest.raises(CliError) as refused:
        run_checked(start())
    assert refused.value.code == EXIT_USAGE and "6.2.14" in str(refused.value)
