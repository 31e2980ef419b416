"""The one `Settings` object: Redis connection, key prefix, queue policies, timings.

Read once at start-up from keyword arguments, then the environment, then the TOML file
named by `TGJOBS_CONFIG` (earlier wins). This is the only module that reads `os.environ`.
"""

from __future__ import annotations

import os
import re
import tomllib
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import parse_qsl, quote, urlsplit, urlunsplit

from pydantic import AfterValidator, AliasChoices, Field, SecretStr, ValidationInfo, field_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from config.api import ApiFields
from config.database import DatabaseFields
from config.defaults import DEFAULT_POLICIES, merge_policy_rows
from config.durations import PositiveSeconds, Seconds
from config.errors import SettingsError
from config.policy import QueuePolicy
from config.services import ServiceFields
from config.topology import TopologyFields

CONFIG_FILE_ENV = "TGJOBS_CONFIG"
REDIS_SCHEMES = ("redis", "rediss", "unix")
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")
REDACTED = "***"

_QUEUE_NAME = re.compile(r"[a-z][a-z0-9_]{0,31}")
_KEY_PREFIX = re.compile(r"[A-Za-z0-9_.-]{1,32}")


def _check_queue_name(name: str) -> str:
    if not _QUEUE_NAME.fullmatch(name):
        raise ValueError(
            "queue name must be 1-32 characters of a-z, 0-9 and _, starting with a letter"
        )
    return name


QueueName = Annotated[str, AfterValidator(_check_queue_name)]


class Settings(ApiFields, ServiceFields, TopologyFields, DatabaseFields, BaseSettings):
    """Everything the processes need to know; build it with `load_settings()`."""

    model_config = SettingsConfigDict(
        env_nested_delimiter="__",
        case_sensitive=False,
        extra="forbid",
        frozen=True,
    )

    redis_url: str | None = Field(default=None, repr=False)  # may embed a password
    redis_host: str = "localhost"
    redis_port: Annotated[int, Field(ge=1, le=65535)] = 6379
    redis_username: str | None = None
    redis_password: SecretStr | None = None
    key_prefix: str = "tg"  # sits inside Redis hash tags: no braces, no colons
    queues: dict[QueueName, QueuePolicy] = Field(default_factory=lambda: dict(DEFAULT_POLICIES))
    read_block: PositiveSeconds = 5.0  # a worker blocks this long waiting for new entries
    shutdown_grace: Seconds = 30.0  # running jobs get this long to finish on SIGTERM
    idempotency_window: PositiveSeconds = 86400.0  # an idempotency key is remembered this long
    events_max_len: Annotated[int, Field(ge=1)] = 10_000  # cap of each queue's events stream
    dead_letter_max_len: Annotated[int, Field(ge=1)] = 100_000  # cap of each dead-letter stream
    dead_consumer_after: PositiveSeconds = 3600.0  # an empty, idle consumer is removed after this
    worker_heartbeat: PositiveSeconds = 5.0  # a worker process refreshes its registry entry this often
    worker_ttl: PositiveSeconds = 15.0  # a registry entry not refreshed for this long expires
    max_entry_bytes: Annotated[int, Field(ge=1)] = 65_536  # a fast-path entry's data larger than this is dead-lettered
    log_level: str = "INFO"
    log_format: Literal["text", "json"] = "text"  # json: one JSON object per line (for log shippers)
    metrics_port: Annotated[int, Field(ge=1, le=65535)] | None = None  # a worker process serves /metrics here
    # The embedded Redis keeps its append-only file under this (TGJOBS_DATA_DIR, or DATA_DIR as
    # before); unset: the user's data directory, $XDG_DATA_HOME/tgjobs or ~/.local/share/tgjobs.
    data_dir: Path | None = Field(default=None, validation_alias=AliasChoices("tgjobs_data_dir", "data_dir"))
    xdg_data_home: Path | None = None
    embedded_redis_port: Annotated[int, Field(ge=1, le=65535)] = 6380  # used when REDIS_URL is unset
    # Tracing (the otel extra): unset or none, OpenTelemetry is not even imported.
    otel_traces_exporter: Literal["otlp", "console", "none"] | None = None
    otel_service_name: str = "tgjobs"

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        toml_file = _config_file()
        if toml_file is None:
            return init_settings, env_settings
        try:
            toml_settings = TomlConfigSettingsSource(settings_cls, toml_file=toml_file)
        except (OSError, tomllib.TOMLDecodeError) as exc:
            raise SettingsError(f"invalid setting {CONFIG_FILE_ENV}: cannot read {toml_file}: {exc}") from None
        return init_settings, env_settings, toml_settings

    @field_validator("redis_url")
    @classmethod
    def _check_redis_url(cls, url: str | None) -> str | None:
        # Messages never echo the URL: it may carry a password.
        if url is None:
            return None
        parts = urlsplit(url)
        if parts.scheme not in REDIS_SCHEMES:
            raise ValueError("must start with redis://, rediss:// (TLS) or unix://")
        if parts.scheme == "unix":
            if not parts.path:
                raise ValueError("a unix:// URL needs a socket path")
            return url
        if not parts.hostname:
            raise ValueError("a redis:// URL needs a host")
        try:
            parts.port
        except ValueError:
            raise ValueError("the port must be a number from 1 to 65535") from None
        return url

    @field_validator("worker_ttl")
    @classmethod
    def _check_worker_ttl(cls, ttl: float, info: ValidationInfo) -> float:
        heartbeat = info.data.get("worker_heartbeat")
        if heartbeat is not None and ttl <= heartbeat:
            raise ValueError(f"must be longer than WORKER_HEARTBEAT ({heartbeat:g}s), or live workers expire")
        return ttl

    @field_validator("key_prefix")
    @classmethod
    def _check_key_prefix(cls, prefix: str) -> str:
        if not _KEY_PREFIX.fullmatch(prefix):
            raise ValueError("must be 1-32 characters of A-Z, a-z, 0-9, '_', '.' or '-'")
        return prefix

    @field_validator("queues", mode="before")
    @classmethod
    def _merge_onto_defaults(cls, queues: Any) -> Any:
        return merge_policy_rows(queues)

    @field_validator("log_format", mode="before")
    @classmethod
    def _fold_log_format(cls, value: Any) -> Any:
        return value.strip().lower() if isinstance(value, str) else value

    @field_validator("log_level", mode="before")
    @classmethod
    def _check_log_level(cls, level: Any) -> Any:
        if not isinstance(level, str):
            return level
        if level.strip().upper() not in LOG_LEVELS:
            raise ValueError(f"must be one of {', '.join(LOG_LEVELS)}")
        return level.strip().upper()

    @field_validator("otel_traces_exporter", mode="before")
    @classmethod
    def _fold_exporter(cls, value: Any) -> Any:
        return (value.strip().lower() or None) if isinstance(value, str) else value

    def data_path(self) -> Path:
        """Where the embedded Redis keeps its data: TGJOBS_DATA_DIR, else the user's data directory."""
        if self.data_dir is not None:
            return self.data_dir
        return (self.xdg_data_home or Path.home() / ".local" / "share") / "tgjobs"

    def redis_connection_url(self) -> str:
        """REDIS_URL if set, else a redis:// URL built from host, port, user and password.
        REDIS_USERNAME and REDIS_PASSWORD beside a REDIS_URL go into it, unless the URL
        carries credentials of its own (those win; `start_warnings` says so)."""
        password = self.redis_password.get_secret_value() if self.redis_password else None
        if self.redis_url is None:
            return _build_redis_url(self.redis_host, self.redis_port, self.redis_username, password)
        if _has_credentials(self.redis_url) or (self.redis_username is None and password is None):
            return self.redis_url
        parts = urlsplit(self.redis_url)
        netloc = f"{_userinfo(self.redis_username, password)}@{parts.netloc}"
        return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))

    def start_warnings(self) -> list[str]:
        """What every process logs as a warning when it starts: settings that work but
        weaken security, or that are overridden."""
        warnings = []
        url = self.redis_url
        if url is not None and _has_credentials(url) and (self.redis_username or self.redis_password):
            warnings.append("REDIS_URL carries credentials of its own: REDIS_USERNAME/REDIS_PASSWORD are not used")
        params = {k.lower(): v.strip().lower() for k, v in parse_qsl(urlsplit(url or "").query)}
        if params.get("ssl_cert_reqs") == "none":
            warnings.append("REDIS_URL has ssl_cert_reqs=none: the Redis server's TLS certificate is not "
                            "verified, so anyone on the path can pose as it")
        if params.get("ssl_check_hostname") in ("false", "0", "no", "off"):
            warnings.append("REDIS_URL has ssl_check_hostname=false: a certificate for any host name is "
                            "accepted from the Redis server")
        return warnings

    def redacted_redis_url(self) -> str:
        """The connection URL with any password replaced by "***", safe for logs."""
        return _redact_url(self.redis_connection_url())

    def redis_location(self) -> str:
        """Where Redis is, for messages: the redacted URL, or the primary the sentinels name."""
        if not self.redis_sentinel_mode:
            return self.redacted_redis_url()
        sentinels = ",".join(f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
                             for host, port in self.redis_sentinels)
        return f"the primary {self.redis_sentinel_master!r} of sentinels {sentinels}"

    def policy(self, queue: str) -> QueuePolicy:
        """The policy row of `queue`; a KeyError naming the known queues if there is none."""
        try:
            return self.queues[queue]
        except KeyError:
            known = ", ".join(sorted(self.queues))
            raise KeyError(f"unknown queue {queue!r}; configured queues: {known}") from None


def _config_file() -> Path | None:
    """The TOML file named by TGJOBS_CONFIG, or None when the variable is unset or empty."""
    name = os.environ.get(CONFIG_FILE_ENV, "").strip()
    if not name:
        return None
    path = Path(name).expanduser()
    if not path.is_file():
        raise SettingsError(f"invalid setting {CONFIG_FILE_ENV}: no such file: {name}")
    return path


def _build_redis_url(host: str, port: int, username: str | None, password: str | None) -> str:
    netloc_host = f"[{host}]" if ":" in host else host
    userinfo = _userinfo(username, password)
    at = "@" if userinfo else ""
    return f"redis://{userinfo}{at}{netloc_host}:{port}"


def _userinfo(username: str | None, password: str | None) -> str:
    userinfo = quote(username, safe="") if username else ""
    if password is not None:
        userinfo += ":" + quote(password, safe="")
    return userinfo


def _has_credentials(url: str) -> bool:
    """A user or password in the URL's authority, or (unix://) a password parameter."""
    parts = urlsplit(url)
    return "@" in parts.netloc or any(name.lower() in ("password", "username")
                                      for name, _ in parse_qsl(parts.query))


def _redact_url(url: str) -> str:
    parts = urlsplit(url)
    userinfo, at, hostport = parts.netloc.rpartition("@")
    netloc = f"{userinfo.split(':', 1)[0]}:{REDACTED}@{hostport}" if at and ":" in userinfo else parts.netloc
    query = "&".join(_redact_query_pair(pair) for pair in parts.query.split("&")) if parts.query else ""
    return (
        f"{parts.scheme}://{netloc}{parts.path}"
        + (f"?{query}" if query else "")
        + (f"#{parts.fragment}" if parts.fragment else "")
    )


def _redact_query_pair(pair: str) -> str:
    """redis-py also takes the password as a query parameter (unix:///sock?password=...)."""
    name = pair.split("=", 1)[0]
    return f"{name}={REDACTED}" if name.lower() == "password" else pair
