"""Logging of every `tgjobs` process: one handler on stderr, human-readable lines
(LOG_FORMAT=text, the default) or one JSON object per line (LOG_FORMAT=json), and a
filter that redacts secrets from every record before any formatter sees it.

Redacted: the password of any URL (redis://user:pw@host -> redis://user:***@host),
`password=`, `token=`, `secret=` style pairs, `Authorization: Bearer ...` values, and
the literal value of every secret the settings hold (API tokens, the Redis and SMTP
passwords...), wherever it appears: message, arguments, extra fields, traceback.

JSON lines carry `ts`, `level`, `logger`, `msg`, the fields the engine adds to its
job lines (`queue`, `job`, `attempt`, `duration_ms`, `outcome`, `error`) and `exc`.
With tracing on, a line logged while a span is active carries `trace_id` and `span_id`
(JSON fields; ` trace_id=... span_id=...` at the end of a text line).
"""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import IO, Any

import orjson
from pydantic import BaseModel, SecretBytes, SecretStr

from config import Settings
from streams import tracing

REDACTED = "***"
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
MIN_SECRET_CHARS = 4  # shorter literal secrets would blank out ordinary words
EXTRA_FIELDS = ("queue", "job", "attempt", "duration_ms", "outcome", "error")
# Attributes every LogRecord has; anything else on a record came through `extra=`.
_RECORD_ATTRS = frozenset(logging.LogRecord("", 0, "", 0, "", (), None).__dict__) | {"message", "asctime"}

_PATTERNS = (
    # scheme://user:password@host (user may be empty: redis://:pw@host)
    (re.compile(r"(?P<keep>\b[a-zA-Z][a-zA-Z0-9+.-]*://[^:/@\s]*:)[^@\s]+(?=@)"), rf"\g<keep>{REDACTED}"),
    # password=..., token: ..., api_key="..." (query strings, key=value dumps, JSON-ish)
    (re.compile(r"(?P<keep>\b(?:password|passwd|pwd|token|secret|api[_-]?key|access[_-]?key)"
                r"[\"']?\s*[=:]\s*[\"']?)[^\s&\"',;}]+", re.IGNORECASE), rf"\g<keep>{REDACTED}"),
    (re.compile(r"(?P<keep>\bBearer\s+)[^\s\"',;]+", re.IGNORECASE), rf"\g<keep>{REDACTED}"),
)


def secret_values(model: Any) -> set[str]:
    """Every SecretStr/SecretBytes value inside a settings model (nested models, lists,
    dicts), and the password of a REDIS_URL."""
    found: set[str] = set()

    def walk(value: Any) -> None:
        if isinstance(value, SecretStr):
            found.add(value.get_secret_value())
        elif isinstance(value, SecretBytes):
            found.add(value.get_secret_value().decode(errors="replace"))
        elif isinstance(value, BaseModel):
            for name in type(value).model_fields:
                walk(getattr(value, name, None))
        elif isinstance(value, dict):
            for item in value.values():
                walk(item)
        elif isinstance(value, (list, tuple, set, frozenset)):
            for item in value:
                walk(item)

    walk(model)
    url = getattr(model, "redis_url", None)
    if url:
        from urllib.parse import unquote, urlsplit

        password = urlsplit(url).password
        if password:
            found.update({password, unquote(password)})
    return {s for s in found if len(s) >= MIN_SECRET_CHARS}


class Redactor:
    def __init__(self, secrets: Iterable[str] = ()) -> None:
        # Longest first, so a secret containing another is replaced whole.
        self.secrets = sorted(set(secrets), key=len, reverse=True)

    def __call__(self, text: str) -> str:
        for secret in self.secrets:
            if secret in text:
                text = text.replace(secret, REDACTED)
        for pattern, replacement in _PATTERNS:
            text = pattern.sub(replacement, text)
        return text


class RedactingFilter(logging.Filter):
    """Rewrites a record in place: its message rendered and redacted (args dropped),
    string extras redacted, and its traceback rendered and redacted."""

    def __init__(self, redact: Redactor) -> None:
        super().__init__()
        self.redact = redact

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a bad format string: keep what there is
            message = f"{record.msg} {record.args}"
        record.msg, record.args = self.redact(message), ()
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = self.redact(record.exc_text)
            record.exc_info = None  # formatters use exc_text, already redacted
        if record.stack_info:
            record.stack_info = self.redact(record.stack_info)
        for name, value in list(record.__dict__.items()):
            if name not in _RECORD_ATTRS and isinstance(value, str):
                setattr(record, name, self.redact(value))
        return True


class TraceIds(logging.Filter):
    """Puts the active span's trace and span ids on a record (installed with tracing on)."""

    def filter(self, record: logging.LogRecord) -> bool:
        ids = tracing.current_ids()
        if ids is not None:
            record.trace_id, record.span_id = ids
        return True


class TextFormatter(logging.Formatter):
    """TEXT_FORMAT, then the trace ids when the record has them."""

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        trace_id = getattr(record, "trace_id", None)
        return f"{line} trace_id={trace_id} span_id={record.span_id}" if trace_id else line


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname, "logger": record.name, "msg": record.getMessage()}
        for name, value in record.__dict__.items():
            if name not in _RECORD_ATTRS and not name.startswith("_"):
                line[name] = value
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            line["exc"] = record.exc_text
        if record.stack_info:
            line["stack"] = record.stack_info
        return orjson.dumps(line, default=str).decode()


def configure_logging(settings: Settings, stream: IO[str] | None = None) -> logging.Handler:
    """Replaces the root logger's handlers with one on `stream` (stderr), in the
    settings' level and format, behind the redacting filter; returns that handler."""
    handler = logging.StreamHandler(stream if stream is not None else sys.stderr)
    handler.setFormatter(JsonFormatter() if settings.log_format == "json" else TextFormatter(TEXT_FORMAT))
    handler.addFilter(RedactingFilter(Redactor(secret_values(settings))))
    if tracing.enabled():
        handler.addFilter(TraceIds())
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(settings.log_level)
    return handler
