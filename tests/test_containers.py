"""docker-compose.yml and the Dockerfile, checked without a Docker engine: the compose
file parses (PyYAML), every tgjobs service's command (and health check) is a real
`tgjobs` subcommand that its own argparse parser accepts, every environment name is a
field of config.Settings and the values validate, and the ports agree with the
settings. The Dockerfile: slim Python 3.11, the package installed from the repo, a
non-root user, a tgjobs command."""

from __future__ import annotations

import json
import os
import re
import shlex
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml

from cli.main import build_parser
from cli.supervisor import KILL_MARGIN_S
from config import Settings

ROOT = Path(__file__).parents[1]
COMPOSE = ROOT / "docker-compose.yml"
DOCKERFILE = ROOT / "Dockerfile"
TGJOBS_SERVICES = ("api", "workers")
# A value for each variable the compose file requires (${VAR:?message}).
REQUIRED_SAMPLES = {"API_TOKENS": '[{"name": "ops", "role": "admin", "token": "compose-test-token-0123456789"}]'}
_VARIABLE = re.compile(r"\$\{(?P<name>[A-Z_][A-Z0-9_]*)(?:(?P<op>:-|:\?)(?P<arg>[^}]*))?\}")


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    document = yaml.safe_load(COMPOSE.read_text())
    assert isinstance(document, dict)
    return document


def interpolate(value: str) -> str:
    """Compose's ${VAR:-default} and ${VAR:?message}, as if the variables were unset
    (required ones take REQUIRED_SAMPLES)."""
    def one(match: re.Match[str]) -> str:
        name, op, arg = match["name"], match["op"], match["arg"]
        if op == ":-":
            return arg
        assert op == ":?", f"${{{name}}} has neither a default nor a message"
        assert name in REQUIRED_SAMPLES, f"no sample value for required {name}"
        return REQUIRED_SAMPLES[name]

    return _VARIABLE.sub(one, value)


def environment(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment", {})
    assert isinstance(env, dict), "environment as a mapping"
    return {name: interpolate(str(value)) for name, value in env.items()}


def settings_from(env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> Settings:
    for name in list(os.environ):
        if name.lower() in Settings.model_fields or name.upper().startswith("QUEUES__") or name == "TGJOBS_CONFIG":
            monkeypatch.delenv(name)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return Settings()


def tgjobs_argv(command: Any) -> list[str]:
    argv = shlex.split(interpolate(command)) if isinstance(command, str) else [interpolate(str(p)) for p in command]
    assert argv and argv[0] == "tgjobs", argv
    return argv[1:]


def parse(argv: list[str]) -> Any:
    parser = build_parser()
    subcommands = next(a for a in parser._actions if a.dest == "command").choices
    assert argv[0] in subcommands, f"{argv[0]!r} is not a tgjobs subcommand: {sorted(subcommands)}"
    try:
        return parser.parse_args(argv)
    except SystemExit:
        pytest.fail(f"tgjobs rejects {' '.join(argv)}")


def container_ports(service: dict[str, Any]) -> list[int]:
    return [int(str(p).rsplit(":", 1)[-1].split("/")[0]) for p in service.get("ports", [])]


def test_compose_has_the_services(compose: dict[str, Any]) -> None:
    assert set(compose["services"]) == {"redis", "postgres", "migrate", "api", "workers", "redis-commander"}


def test_postgres_on_a_volume_with_a_health_check_and_migrated_first(compose: dict[str, Any],
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    services = compose["services"]
    postgres = services["postgres"]
    assert postgres["image"].startswith("postgres:")
    (volume,) = postgres["volumes"]
    name, target = volume.split(":")[:2]
    assert target == "/var/lib/postgresql/data" and name in compose["volumes"]
    assert "pg_isready" in postgres["healthcheck"]["test"]
    migrate = services["migrate"]
    assert parse(tgjobs_argv(migrate["command"])).action == "migrate"
    assert migrate["depends_on"]["postgres"]["condition"] == "service_healthy"
    for name in ("api", "workers"):
        assert services[name]["depends_on"]["migrate"]["condition"] == "service_completed_successfully"
        settings = settings_from(environment(services[name]), monkeypatch)
        assert settings.sink_enabled and settings.redacted_database_url() == "postgres:5432/tgjobs"


def test_redis_is_7_append_only_on_a_volume_with_a_health_check(compose: dict[str, Any]) -> None:
    redis = compose["services"]["redis"]
    assert re.fullmatch(r"redis:7[.\w-]*", redis["image"])
    command = redis["command"]
    assert command[0] == "redis-server"
    assert command[command.index("--appendonly") + 1] == "yes"
    assert command[command.index("--maxmemory-policy") + 1] == "noeviction"
    (volume,) = redis["volumes"]
    name, target = volume.split(":")[:2]
    assert target == "/data" and name in compose["volumes"]
    assert "redis-cli" in redis["healthcheck"]["test"]


@pytest.mark.parametrize("name", TGJOBS_SERVICES)
def test_commands_are_tgjobs_subcommands(compose: dict[str, Any], name: str) -> None:
    service = compose["services"][name]
    assert service["image"].startswith("tgjobs")
    parse(tgjobs_argv(service["command"]))
    test = service["healthcheck"]["test"]
    if test[0] in ("CMD", "CMD-SHELL") and "tgjobs" in " ".join(test[1:2]):
        parse(tgjobs_argv(test[1:] if test[0] == "CMD" else test[1]))


def test_api_command_serves_on_every_interface(compose: dict[str, Any]) -> None:
    args = parse(tgjobs_argv(compose["services"]["api"]["command"]))
    assert args.command == "api" and args.host == "0.0.0.0"


@pytest.mark.parametrize("name", TGJOBS_SERVICES)
def test_environment_names_are_settings(compose: dict[str, Any], name: str,
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    env = environment(compose["services"][name])
    fields = set(Settings.model_fields)
    unknown = [n for n in env if n.lower() not in fields and not n.upper().startswith("QUEUES__")]
    assert not unknown, f"{name}: not settings: {unknown}"
    settings = settings_from(env, monkeypatch)  # the values validate too
    assert settings.redis_url is not None
    host = settings.redis_url.split("://", 1)[1].split(":")[0].split("/")[0]
    assert host in compose["services"], f"REDIS_URL names {host!r}, no service"


def test_api_port_matches_the_settings(compose: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    api = compose["services"]["api"]
    settings = settings_from(environment(api), monkeypatch)
    args = parse(tgjobs_argv(api["command"]))
    port = args.port or settings.api_port
    assert container_ports(api) == [port]
    assert str(port) in " ".join(api["healthcheck"]["test"])
    assert settings.api_tokens, "the API binds beyond loopback: it needs tokens"


def test_workers_scale_and_serve_metrics(compose: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    workers = compose["services"]["workers"]
    assert "ports" not in workers and "container_name" not in workers, "replicas would clash"
    settings = settings_from(environment(workers), monkeypatch)
    args = parse(tgjobs_argv(workers["command"]))
    assert args.processes == "auto"  # a supervisor, one worker process per CPU
    port = args.metrics_port or settings.metrics_port
    assert port == settings.metrics_port
    (exposed,) = workers["expose"]
    first, last = map(int, str(exposed).split("-"))
    assert first == port and last - first + 1 >= 16, "process i serves the metrics port + i"
    grace = re.fullmatch(r"(\d+)s", workers["stop_grace_period"])
    assert grace and int(grace[1]) > settings.shutdown_grace + KILL_MARGIN_S


def test_redis_commander_is_a_tool_on_8081(compose: dict[str, Any]) -> None:
    commander = compose["services"]["redis-commander"]
    assert commander["profiles"] == ["tools"]
    assert container_ports(commander) == [8081] and str(commander["ports"][0]).startswith("8081:")
    assert "redis:6379" in commander["environment"]["REDIS_HOSTS"]


def dockerfile() -> list[tuple[str, str]]:
    text = DOCKERFILE.read_text().replace("\\\n", " ")
    return [(line.split(None, 1)[0].upper(), line.split(None, 1)[1].strip())
            for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]


def test_dockerfile_slim_python_installed_from_the_repo_non_root() -> None:
    steps = dockerfile()
    assert steps[0] == ("FROM", "python:3.11-slim")
    installs = [i for i, (op, arg) in enumerate(steps) if op == "RUN" and re.search(r"pip install \.(\s|$)", arg)]
    assert installs, "the package is pip-installed from the repo"
    users = [(i, arg) for i, (op, arg) in enumerate(steps) if op == "USER"]
    assert users and users[-1][1] not in ("root", "0") and users[-1][0] > installs[-1]
    copied = {arg.split()[0].rstrip("/").removeprefix("./") for op, arg in steps if op == "COPY"}
    packages = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]["find"]
    for pattern in packages["include"]:
        assert pattern.rstrip("*") in copied, f"{pattern} is not copied into the image"
    assert "pyproject.toml" in " ".join(arg for op, arg in steps if op == "COPY")
    (cmd,) = [arg for op, arg in steps if op == "CMD"]
    parse(tgjobs_argv(json.loads(cmd)))
    exposed = {int(p) for op, arg in steps if op == "EXPOSE" for p in arg.split()}
    assert Settings.model_fields["api_port"].default in exposed


def test_dockerignore_keeps_local_state_out() -> None:
    ignored = set((ROOT / ".dockerignore").read_text().split())
    assert {".git", ".venv", ".data"} <= ignored
