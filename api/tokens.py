"""Who is calling: bearer tokens with roles, from settings and from a tokens file that
may be rewritten at any time (it is re-read when its mtime, size or inode changes).

Tokens are compared in constant time, as SHA-256 digests so their lengths do not leak
either, and no log line or error message ever contains one.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from enum import IntEnum
from fnmatch import fnmatchcase
from pathlib import Path

import orjson
from pydantic import TypeAdapter, ValidationError

from config.api import ApiToken, check_unique_tokens

log = logging.getLogger(__name__)
_TOKEN_LIST = TypeAdapter(list[ApiToken])


class Role(IntEnum):
    """What a caller may do; each role includes the ones below it."""

    VIEWER = 1  # read (GET)
    PRODUCER = 2  # read, and create jobs
    ADMIN = 3  # everything, including queue and job management

    @classmethod
    def named(cls, name: str) -> Role:
        return cls[name.upper()]

    def __str__(self) -> str:
        return self.name.lower()


@dataclass(frozen=True, slots=True)
class Principal:
    """The caller a request was authenticated as; `name` is what the audit trail shows.
    `companies` and `email_domains` (glob patterns) limit what it may touch; None: anything."""

    name: str
    role: Role
    companies: tuple[str, ...] | None = None
    email_domains: tuple[str, ...] | None = None

    def refusal(self, *, company: str | None = None, email_to: str | None = None) -> tuple[str, str] | None:
        """(what is refused, why) when this caller may not act on `company` or e-mail
        `email_to`; None when it may."""
        if company is not None and self.companies is not None \
                and not any(fnmatchcase(company, pattern) for pattern in self.companies):
            return company, f"token {self.name} may not act on company {company!r}"
        if email_to is not None and self.email_domains is not None:
            domain = email_to.rpartition("@")[2].lower()
            if not any(fnmatchcase(domain, pattern.lower()) for pattern in self.email_domains):
                return email_to, f"token {self.name} may not have reports e-mailed to {domain!r}"
        return None


ANONYMOUS = Principal("anonymous", Role.ADMIN)  # every caller, when no token is configured


class TokenFileError(Exception):
    """The tokens file cannot be read or parsed; the message never quotes a token."""


class TokenStore:
    def __init__(self, tokens: Sequence[ApiToken], file: Path | None) -> None:
        self._static = list(tokens)
        self._file = file
        self._stamp: tuple[int, int, int] | None = None
        self._entries = self._digests(self._static)
        if file is not None:
            self._stamp = _stamp(file)
            self._entries = self._digests([*self._static, *_read(file)])

    @property
    def open(self) -> bool:
        """True when no token is configured at all: every request is let through."""
        return not self._static and self._file is None

    def authenticate(self, presented: str) -> Principal | None:
        """The principal whose token this is, or None. Every configured token is compared,
        matching or not, so the time taken says nothing about which one matched."""
        self._refresh()
        digest = hashlib.sha256(presented.encode()).digest()
        found = None
        for candidate, principal in self._entries:
            if hmac.compare_digest(digest, candidate):
                found = principal
        return found

    def _refresh(self) -> None:
        if self._file is None:
            return
        try:
            stamp = _stamp(self._file)
        except TokenFileError as exc:
            if self._stamp is not None:
                log.error("%s; keeping the tokens read before", exc)
                self._stamp = None
            return
        if stamp == self._stamp:
            return
        self._stamp = stamp  # also after a failed read: one log line per change, not per request
        try:
            tokens = [*self._static, *_read(self._file)]
            entries = self._digests(tokens)
        except TokenFileError as exc:
            log.error("%s; keeping the tokens read before", exc)
            return
        self._entries = entries
        log.info("API tokens reloaded from %s: %d configured", self._file, len(tokens))

    @staticmethod
    def _digests(tokens: list[ApiToken]) -> list[tuple[bytes, Principal]]:
        try:
            check_unique_tokens(tokens)
        except ValueError as exc:
            raise TokenFileError(f"API tokens: {exc}") from None
        return [(hashlib.sha256(t.token.get_secret_value().encode()).digest(),
                 Principal(t.name, Role.named(t.role), t.companies, t.email_domains)) for t in tokens]


def _stamp(file: Path) -> tuple[int, int, int]:
    try:
        st = os.stat(file)
    except OSError as exc:
        raise TokenFileError(f"API_TOKENS_FILE {file}: {exc.strerror}") from None
    return st.st_mtime_ns, st.st_size, st.st_ino


def _read(file: Path) -> list[ApiToken]:
    try:
        raw = orjson.loads(file.read_bytes())
    except OSError as exc:
        raise TokenFileError(f"API_TOKENS_FILE {file}: {exc.strerror}") from None
    except orjson.JSONDecodeError as exc:
        raise TokenFileError(f"API_TOKENS_FILE {file}: not JSON ({exc})") from None
    try:
        return _TOKEN_LIST.validate_python(raw)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or '(file)'}: {e['msg']}" for e in exc.errors())
        raise TokenFileError(f"API_TOKENS_FILE {file}: {problems}") from None
