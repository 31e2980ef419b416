"""Settings of the HTTP API (tokens, limits, bind address). Mixed into `Settings`.

Tokens are `SecretStr` and excluded from repr, so neither a log line nor an error
message can show one; `ApiToken` also parses the rotating tokens file (api.auth).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated, Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, SecretStr, StringConstraints, field_validator

from config.services import CommaList

MIB = 1024 * 1024
TOKEN_MIN_CHARS = 16
TOKEN_MAX_CHARS = 512
_HOST_NAME = re.compile(r"^(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9_.:-]{1,253})$")

Role = Literal["viewer", "producer", "admin"]
TokenName = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_.@-]{1,64}$")]


ScopePatterns = Annotated[tuple[Annotated[str, StringConstraints(strip_whitespace=True, min_length=1,
                                                                  max_length=200)], ...],
                          Field(min_length=1, max_length=100)]


class ApiToken(BaseModel):
    """One bearer token: `name` is who the audit trail records, `role` what it may do;
    optionally its scope (api.scope): `companies`, glob patterns of the companyIds it may
    act on and read, and `emailDomains`, glob patterns of the domains it may have
    reports e-mailed to. Without them a token is not limited."""

    model_config = ConfigDict(frozen=True, extra="forbid", hide_input_in_errors=True, populate_by_name=True)

    name: TokenName
    role: Role
    token: SecretStr
    companies: ScopePatterns | None = None
    email_domains: ScopePatterns | None = Field(None, alias="emailDomains")

    @field_validator("token")
    @classmethod
    def _long_enough(cls, token: SecretStr) -> SecretStr:
        if not TOKEN_MIN_CHARS <= len(token.get_secret_value()) <= TOKEN_MAX_CHARS:
            raise ValueError(f"a token must be {TOKEN_MIN_CHARS} to {TOKEN_MAX_CHARS} characters long")
        return token


def check_unique_tokens(tokens: Sequence[ApiToken]) -> None:
    """Names must be unique (the audit trail tells callers apart by name), and so must
    the secrets (one secret cannot carry two roles)."""
    names = [t.name for t in tokens]
    if len(set(names)) != len(names):
        raise ValueError("token names must be unique")
    secrets = [t.token.get_secret_value() for t in tokens]
    if len(set(secrets)) != len(secrets):
        raise ValueError("two entries share the same token")


class ApiFields(BaseModel):
    """Env names are the field names upper-cased (API_TOKENS, API_PORT...)."""

    api_host: str = "127.0.0.1"
    api_port: Annotated[int, Field(ge=1, le=65535)] = 3000
    api_tokens: list[ApiToken] = Field(default_factory=list, repr=False)  # JSON list of {name, role, token}
    api_tokens_file: Path | None = None  # same JSON list; re-read when its mtime changes
    api_allow_open: bool = False  # without tokens, bind beyond loopback anyway
    api_max_body: Annotated[int, Field(ge=1)] = MIB  # bytes; larger bodies get 413
    api_audit_max_len: Annotated[int, Field(ge=1)] = 10_000  # cap of the audit stream
    api_redis_connections: Annotated[int, Field(ge=1)] = 32  # the API's own pool
    api_max_signals: Annotated[int, Field(ge=1)] = 1000  # items of one POST /api/signals (array or NDJSON)
    api_events_per_token: Annotated[int, Field(ge=1, le=64)] = 8  # open GET /api/events per token (64 in all)
    # Host names (no port) answered besides loopback ones; "*" answers any (DNS rebinding: see api.guard).
    api_allowed_hosts: CommaList = ()
    # Origins (scheme://host[:port]) of other sites whose pages may call the API (CORS).
    api_cors_origins: CommaList = ()

    @field_validator("api_allowed_hosts")
    @classmethod
    def _check_hosts(cls, hosts: tuple[str, ...]) -> tuple[str, ...]:
        for host in hosts:
            if host != "*" and not _HOST_NAME.fullmatch(host):
                raise ValueError(f"{host!r} is not a host name or address (no scheme, no port)")
        return tuple(host.lower().strip("[]") for host in hosts)

    @field_validator("api_cors_origins")
    @classmethod
    def _check_origins(cls, origins: tuple[str, ...]) -> tuple[str, ...]:
        for origin in origins:
            parts = urlsplit(origin)
            if parts.scheme not in ("http", "https") or not parts.hostname or parts.path.strip("/") \
                    or parts.query or parts.fragment:
                raise ValueError(f"{origin!r} is not an origin such as https://app.example.com")
        return tuple(origin.lower().rstrip("/") for origin in origins)

    @field_validator("api_tokens")
    @classmethod
    def _unique_tokens(cls, tokens: list[ApiToken]) -> list[ApiToken]:
        check_unique_tokens(tokens)
        return tokens

    @property
    def api_open(self) -> bool:
        """True when no token is configured at all: every request is let through."""
        return not self.api_tokens and self.api_tokens_file is None
