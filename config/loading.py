"""Build `Settings` for a process and turn validation failures into one-line errors.

`load_settings()` is the start-up entry point; the `SettingsError` it raises names the
setting as it is spelled in the environment (QUEUES__RESEARCH__ATTEMPTS), never its value.
"""

from __future__ import annotations

import re
from typing import Any

import pydantic_settings
from pydantic import ValidationError
from pydantic_core import ErrorDetails

from config.errors import SettingsError
from config.settings import Settings

ENV_NESTED_DELIMITER = "__"
_SOURCE_ERROR_FIELD = re.compile(r'field "(?P<name>\w+)"')


def load_settings(**overrides: Any) -> Settings:
    """Settings from keyword overrides, then the environment, then the TGJOBS_CONFIG file."""
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        raise SettingsError(_describe(exc)) from None
    except pydantic_settings.SettingsError as exc:
        raise SettingsError(_describe_source_error(exc)) from None


def _describe(exc: ValidationError) -> str:
    problems = [f"{_env_name(error['loc'])}: {_message(error)}" for error in exc.errors()]
    return "invalid setting " + "; ".join(problems)


def _env_name(loc: tuple[int | str, ...]) -> str:
    """("queues", "research", "attempts") -> "QUEUES__RESEARCH__ATTEMPTS"."""
    parts = [part.upper() for part in loc if isinstance(part, str) and part != "[key]"]
    name = ENV_NESTED_DELIMITER.join(parts) or "(settings)"
    return name.encode("unicode_escape").decode("ascii")  # a stray newline stays visible, on one line


def _message(error: ErrorDetails) -> str:
    message = str(error["msg"]).removeprefix("Value error, ")
    return " ".join(message.split())


def _describe_source_error(exc: pydantic_settings.SettingsError) -> str:
    """pydantic-settings fails this way when a value meant as JSON does not parse."""
    field = _SOURCE_ERROR_FIELD.search(str(exc))
    name = field["name"].upper() if field else "(settings)"
    return f"invalid setting {name}: value could not be parsed ({exc})"
