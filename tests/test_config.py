"""Tests for the config package: durations, rate limits, policy rows and Settings sources.

No Redis needed. An autouse fixture clears every variable Settings would read, so the
outcome never depends on the shell the tests run in; env cases use monkeypatch.setenv.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from pydantic import ValidationError

from config import (
    DEFAULT_POLICIES,
    QueuePolicy,
    RateLimit,
    Settings,
    SettingsError,
    load_settings,
    parse_duration,
)

SECRET = "s3cr3t-P@ss/word"


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Remove settings variables the surrounding shell (or CI) may have set."""
    names = {name.upper() for name in Settings.model_fields} | {"TGJOBS_CONFIG", "TGJOBS_DATA_DIR"}
    for var in list(os.environ):
        upper = var.upper()
        if upper in names or upper.startswith("QUEUES__"):
            monkeypatch.delenv(var)


def write_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, text: str) -> Path:
    path = tmp_path / "tgjobs.toml"
    path.write_text(text)
    monkeypatch.setenv("TGJOBS_CONFIG", str(path))
    return path


def settings_error(**overrides: object) -> str:
    with pytest.raises(SettingsError) as caught:
        load_settings(**overrides)
    message = str(caught.value)
    assert "\n" not in message
    return message


# --- defaults -----------------------------------------------------------------------


def test_defaults_equal_the_seed_table() -> None:
    expected = {
        "research": ("exponential", 3, 2.0, RateLimit(max=10, per=60), 5, 300.0),
        "enrichment": ("fixed", 2, 5.0, RateLimit(max=50, per=60), 10, 60.0),
        "reports": ("fixed", 2, 1.0, RateLimit(max=20, per=3600), 2, 600.0),
        "signals": ("exponential", 5, 1.0, None, 50, 10.0),
    }
    assert set(DEFAULT_POLICIES) == set(expected)
    for name, (backoff, attempts, delay, rate_limit, concurrency, timeout) in expected.items():
        fast = name == "signals"  # the fast path: no job records, large read batches
        assert DEFAULT_POLICIES[name] == QueuePolicy(
            attempts=attempts, backoff=backoff, backoff_delay=delay, rate_limit=rate_limit,
            concurrency=concurrency, timeout=timeout, keep_completed=100, keep_failed=50,
            records=not fast, batch_size=500 if fast else 100, partition_by="companyId" if fast else None,
        )
        row = DEFAULT_POLICIES[name]
        assert (row.lock_timeout, row.max_stalls, row.lane_weights, row.partitions) == (30.0, 3, None, 1)


def test_settings_defaults() -> None:
    settings = load_settings()
    assert settings.queues == DEFAULT_POLICIES
    assert settings.key_prefix == "tg"
    assert settings.redis_connection_url() == "redis://localhost:6379"
    assert (settings.read_block, settings.shutdown_grace, settings.idempotency_window) == (5.0, 30.0, 86400.0)
    assert (settings.events_max_len, settings.dead_letter_max_len) == (10_000, 100_000)
    assert (settings.dead_consumer_after, settings.log_level) == (3600.0, "INFO")


def test_settings_kwargs_merge_onto_default_row() -> None:
    settings = Settings(key_prefix="t1", queues={"research": {"attempts": 1}})
    assert settings.key_prefix == "t1"
    assert settings.queues["research"] == DEFAULT_POLICIES["research"].model_copy(update={"attempts": 1})
    assert settings.queues["signals"] == DEFAULT_POLICIES["signals"]


def test_policy_lookup() -> None:
    settings = Settings()
    assert settings.policy("reports") is settings.queues["reports"]
    with pytest.raises(KeyError, match="unknown queue 'nope'.*research"):
        settings.policy("nope")


# --- parse_duration -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        (5, 5.0), (2.5, 2.5), (0, 0.0), ("2.5", 2.5), ("500ms", 0.5), ("5s", 5.0), ("90s", 90.0),
        ("2m", 120.0), ("15m", 900.0), ("1h", 3600.0), ("24h", 86400.0), ("1d", 86400.0),
        (" 10 s ", 10.0), ("1.5H", 5400.0),
    ],
)
def test_parse_duration_forms(value: str | float, seconds: float) -> None:
    assert parse_duration(value) == pytest.approx(seconds)


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        ("", "empty"), ("   ", "empty"), (-1, "negative"), ("-5s", "negative"), ("5w", "unknown unit"),
        ("fast", "not a number"), ("1.2.3s", "not a number"), (float("nan"), "finite"), (True, "seconds"),
    ],
)
def test_parse_duration_errors(value: object, reason: str) -> None:
    with pytest.raises(ValueError, match=reason):
        parse_duration(value)  # type: ignore[arg-type]


# --- RateLimit ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "limit"),
    [
        ("10/min", (10, 60.0)), ("10/minute", (10, 60.0)), ("20/hour", (20, 3600.0)), ("20/h", (20, 3600.0)),
        ("5/s", (5, 1.0)), ("5/sec", (5, 1.0)), ("100/day", (100, 86400.0)), ("5/2s", (5, 2.0)),
        ("5/500ms", (5, 0.5)), (" 7 / 90s ", (7, 90.0)),
    ],
)
def test_rate_limit_from_text(text: str, limit: tuple[int, float]) -> None:
    parsed = RateLimit.model_validate(text)
    assert (parsed.max, parsed.per) == limit


def test_rate_limit_from_dict_and_str() -> None:
    assert RateLimit.model_validate({"max": 3, "per": "2m"}) == RateLimit(max=3, per=120)
    assert str(RateLimit(max=10, per=60)) == "10/60s"
    assert str(RateLimit(max=5, per=0.5)) == "5/0.5s"
    assert RateLimit.model_validate(str(RateLimit(max=5, per=0.5))) == RateLimit(max=5, per=0.5)


@pytest.mark.parametrize("text", ["10", "x/min", "0/min", "10/fortnight", "10/-1s", "10/0s"])
def test_rate_limit_rejects(text: str) -> None:
    with pytest.raises(ValidationError):
        RateLimit.model_validate(text)


@pytest.mark.parametrize("value", ["none", "None", "", None])
def test_rate_limit_none_means_no_limit(value: str | None) -> None:
    settings = Settings(queues={"research": {"rate_limit": value}})
    assert settings.queues["research"].rate_limit is None


# --- QueuePolicy --------------------------------------------------------------------


def test_backoff_for_exponential_and_fixed() -> None:
    research = DEFAULT_POLICIES["research"]
    assert [research.backoff_for(n) for n in (1, 2, 3, 4)] == [2.0, 4.0, 8.0, 16.0]
    enrichment = DEFAULT_POLICIES["enrichment"]
    assert [enrichment.backoff_for(n) for n in (1, 2, 5)] == [5.0, 5.0, 5.0]
    with pytest.raises(ValueError):
        research.backoff_for(0)


@pytest.mark.parametrize(
    ("value", "weights"),
    [("6:3:1", (6, 3, 1)), ([6, 3, 1], (6, 3, 1)), ("0:0:1", (0, 0, 1)), ("strict", None), (None, None)],
)
def test_lane_weights_parse(value: object, weights: tuple[int, int, int] | None) -> None:
    row = DEFAULT_POLICIES["research"].model_dump() | {"lane_weights": value}
    assert QueuePolicy.model_validate(row).lane_weights == weights


@pytest.mark.parametrize("value", ["6:3", "0:0:0", "6:-1:1", "a:b:c", [1.5, 1, 1], 7])
def test_lane_weights_rejected(value: object) -> None:
    row = DEFAULT_POLICIES["research"].model_dump() | {"lane_weights": value}
    with pytest.raises(ValidationError):
        QueuePolicy.model_validate(row)


def test_policy_durations_accept_strings() -> None:
    settings = Settings(queues={"research": {"timeout": "2m", "backoff_delay": "500ms", "lock_timeout": 10}})
    row = settings.queues["research"]
    assert (row.timeout, row.backoff_delay, row.lock_timeout) == (120.0, 0.5, 10.0)


def test_policy_rows_are_frozen() -> None:
    with pytest.raises(ValidationError):
        DEFAULT_POLICIES["research"].attempts = 9  # type: ignore[misc]


# --- environment --------------------------------------------------------------------


def test_the_embedded_redis_data_lives_in_the_users_data_directory(monkeypatch: pytest.MonkeyPatch,
                                                                   tmp_path: Path) -> None:
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert load_settings().data_path() == tmp_path / "home" / ".local" / "share" / "tgjobs"
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    assert load_settings().data_path() == tmp_path / "xdg" / "tgjobs"
    monkeypatch.setenv("DATA_DIR", str(tmp_path / "old-name"))
    assert load_settings().data_path() == tmp_path / "old-name"
    monkeypatch.setenv("TGJOBS_DATA_DIR", str(tmp_path / "chosen"))
    assert load_settings().data_path() == tmp_path / "chosen"


def test_tracing_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    assert load_settings().otel_traces_exporter is None
    monkeypatch.setenv("OTEL_TRACES_EXPORTER", " Console ")
    assert load_settings().otel_traces_exporter == "console"
    monkeypatch.setenv("OTEL_TRACES_EXPORTER", "zipkin")
    assert settings_error() == ("invalid setting OTEL_TRACES_EXPORTER: Input should be 'otlp', 'console' "
                                "or 'none'")


def test_env_override_of_one_field_keeps_the_rest(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("QUEUES__RESEARCH__ATTEMPTS", "5")
    settings = load_settings()
    assert settings.queues["research"] == DEFAULT_POLICIES["research"].model_copy(update={"attempts": 5})
    assert settings.queues["enrichment"] == DEFAULT_POLICIES["enrichment"]


def test_env_nested_forms(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("QUEUES__SIGNALS__LOCK_TIMEOUT", "5s")
    monkeypatch.setenv("QUEUES__RESEARCH__RATE_LIMIT", "none")
    monkeypatch.setenv("QUEUES__REPORTS__BACKOFF", "exponential")
    monkeypatch.setenv("QUEUES__RESEARCH__LANE_WEIGHTS", "6:3:1")
    monkeypatch.setenv("QUEUES__ENRICHMENT__RATE_LIMIT", "5/2s")
    monkeypatch.setenv("READ_BLOCK", "250ms")
    settings = load_settings()
    assert settings.queues["signals"].lock_timeout == 5.0
    assert settings.queues["signals"].concurrency == 50
    assert settings.queues["research"].rate_limit is None
    assert settings.queues["research"].lane_weights == (6, 3, 1)
    assert settings.queues["reports"].backoff == "exponential"
    assert settings.queues["reports"].backoff_delay == 1.0
    assert settings.queues["enrichment"].rate_limit == RateLimit(max=5, per=2)
    assert settings.read_block == 0.25


def test_env_adds_a_new_queue(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("QUEUES__MAIL__CONCURRENCY", "2")
    mail = load_settings().queues["mail"]
    assert mail.concurrency == 2
    assert (mail.attempts, mail.backoff, mail.backoff_delay, mail.rate_limit, mail.timeout) == (
        3, "exponential", 1.0, None, 60.0,
    )


def test_kwargs_beat_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KEY_PREFIX", "fromenv")
    monkeypatch.setenv("QUEUES__RESEARCH__ATTEMPTS", "5")
    monkeypatch.setenv("QUEUES__RESEARCH__CONCURRENCY", "9")
    settings = load_settings(key_prefix="fromkw", queues={"research": {"attempts": 7}})
    assert settings.key_prefix == "fromkw"
    assert (settings.queues["research"].attempts, settings.queues["research"].concurrency) == (7, 9)


# --- TOML file ----------------------------------------------------------------------


def test_toml_file_is_read(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write_config(tmp_path, monkeypatch, """
key_prefix = "fromfile"
idempotency_window = "1h"

[queues.research]
attempts = 5
lane_weights = [4, 2, 1]
""")
    settings = load_settings()
    assert settings.key_prefix == "fromfile"
    assert settings.idempotency_window == 3600.0
    research = settings.queues["research"]
    assert (research.attempts, research.lane_weights, research.concurrency) == (5, (4, 2, 1), 5)


def test_env_beats_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write_config(tmp_path, monkeypatch, """
key_prefix = "fromfile"
[queues.research]
attempts = 5
timeout = "1m"
""")
    monkeypatch.setenv("KEY_PREFIX", "fromenv")
    monkeypatch.setenv("QUEUES__RESEARCH__ATTEMPTS", "8")
    settings = load_settings()
    assert settings.key_prefix == "fromenv"
    assert settings.queues["research"].attempts == 8
    assert settings.queues["research"].timeout == 60.0  # the file's other field survives
    assert load_settings(key_prefix="fromkw").key_prefix == "fromkw"


def test_new_queue_row_from_toml(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write_config(tmp_path, monkeypatch, """
[queues.mail]
concurrency = 2
rate_limit = "30/min"
""")
    settings = load_settings()
    assert settings.policy("mail").concurrency == 2
    assert settings.policy("mail").rate_limit == RateLimit(max=30, per=60)
    assert settings.policy("mail").keep_completed == 100
    assert set(DEFAULT_POLICIES) < set(settings.queues)


def test_missing_config_file_names_the_variable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TGJOBS_CONFIG", str(tmp_path / "absent.toml"))
    assert settings_error().startswith("invalid setting TGJOBS_CONFIG:")


def test_malformed_config_file_names_the_variable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write_config(tmp_path, monkeypatch, "key_prefix = \n")
    assert settings_error().startswith("invalid setting TGJOBS_CONFIG:")


def test_misspelled_top_level_key_in_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write_config(tmp_path, monkeypatch, 'key_prefx = "x"\n')
    assert settings_error() == "invalid setting KEY_PREFX: Extra inputs are not permitted"


# --- errors -------------------------------------------------------------------------


def test_invalid_queue_field_names_env_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("QUEUES__RESEARCH__ATTEMPTS", "0")
    assert settings_error() == (
        "invalid setting QUEUES__RESEARCH__ATTEMPTS: Input should be greater than or equal to 1"
    )


def test_invalid_port_names_env_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REDIS_PORT", "70000")
    assert settings_error().startswith("invalid setting REDIS_PORT: ")
    monkeypatch.setenv("REDIS_PORT", "abc")
    assert settings_error().startswith("invalid setting REDIS_PORT: ")


def test_invalid_duration_names_env_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("QUEUES__SIGNALS__TIMEOUT", "5 weeks")
    message = settings_error()
    assert message.startswith("invalid setting QUEUES__SIGNALS__TIMEOUT: ")
    monkeypatch.setenv("QUEUES__SIGNALS__TIMEOUT", "0s")
    assert settings_error().startswith("invalid setting QUEUES__SIGNALS__TIMEOUT: ")


def test_unknown_field_in_a_row_is_rejected() -> None:
    assert settings_error(queues={"research": {"atempts": 5}}) == (
        "invalid setting QUEUES__RESEARCH__ATEMPTS: Extra inputs are not permitted"
    )


@pytest.mark.parametrize("name", ["Research", "9lives", "has-dash", "a" * 33, "", "sp ace", "mail\n"])
def test_bad_queue_name_rejected(name: str) -> None:
    message = settings_error(queues={name: {"concurrency": 1}})
    assert "queue name must be" in message


def test_bad_backoff_and_rate_limit_named() -> None:
    assert settings_error(queues={"reports": {"backoff": "linear"}}).startswith(
        "invalid setting QUEUES__REPORTS__BACKOFF: "
    )
    assert settings_error(queues={"reports": {"rate_limit": "lots"}}).startswith(
        "invalid setting QUEUES__REPORTS__RATE_LIMIT: "
    )


@pytest.mark.parametrize("prefix", ["", "a{b}", "a:b", "x" * 33, "sp ace", "tg\n"])
def test_bad_key_prefix_rejected(prefix: str) -> None:
    assert settings_error(key_prefix=prefix).startswith("invalid setting KEY_PREFIX: ")


def test_log_level_normalised_and_checked() -> None:
    assert load_settings(log_level="debug").log_level == "DEBUG"
    assert settings_error(log_level="LOUD").startswith("invalid setting LOG_LEVEL: ")


# --- Redis connection and secrets ---------------------------------------------------


def test_connection_url_from_parts(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REDIS_HOST", "cache.internal")
    monkeypatch.setenv("REDIS_PORT", "6380")
    monkeypatch.setenv("REDIS_USERNAME", "worker")
    monkeypatch.setenv("REDIS_PASSWORD", SECRET)
    settings = load_settings()
    assert settings.redis_connection_url() == "redis://worker:s3cr3t-P%40ss%2Fword@cache.internal:6380"
    assert settings.redacted_redis_url() == "redis://worker:***@cache.internal:6380"
    assert SECRET not in repr(settings)


def test_connection_url_password_only() -> None:
    settings = Settings(redis_password=SECRET)
    assert settings.redis_connection_url().startswith("redis://:s3cr3t")
    assert settings.redacted_redis_url() == "redis://:***@localhost:6379"


def test_connection_url_from_redis_url(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REDIS_URL", f"rediss://app:{SECRET.replace('@', '%40').replace('/', '%2F')}@r.example:6390/2")
    monkeypatch.setenv("REDIS_HOST", "ignored")
    settings = load_settings()
    assert settings.redis_connection_url().startswith("rediss://app:s3cr3t")
    assert settings.redacted_redis_url() == "rediss://app:***@r.example:6390/2"
    assert "s3cr3t" not in repr(settings)


def test_unix_url_accepted_and_query_password_redacted() -> None:
    settings = Settings(redis_url="unix:///run/redis.sock?db=1&password=hunter2")
    assert settings.redacted_redis_url() == "unix:///run/redis.sock?db=1&password=***"


@pytest.mark.parametrize("url", ["http://user:hunter2@host:6379", "localhost:6379", "redis://", "redis://h:notaport"])
def test_bad_redis_url_rejected_without_echoing_it(url: str) -> None:
    message = settings_error(redis_url=url)
    assert message.startswith("invalid setting REDIS_URL: ")
    assert "hunter2" not in message


def test_secret_never_in_error_message(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REDIS_PASSWORD", SECRET)
    monkeypatch.setenv("REDIS_URL", f"ftp://u:{SECRET}@host")
    monkeypatch.setenv("REDIS_PORT", "not-a-port")
    with pytest.raises(SettingsError) as caught:
        load_settings()
    assert "s3cr3t" not in str(caught.value)
    assert "s3cr3t" not in repr(caught.value)
    assert caught.value.__suppress_context__
