"""Settings of the product's database, PostgreSQL, where the processors' records land
(README, "Records in PostgreSQL"). Mixed into `Settings`. DATABASE_URL unset: no sink,
records live in Redis only.
"""

from __future__ import annotations

import re
from typing import Annotated
from urllib.parse import urlsplit

from pydantic import BaseModel, Field, SecretStr, field_validator

from config.durations import PositiveSeconds

DATABASE_SCHEMES = ("postgresql", "postgres")
_SCHEMA_NAME = re.compile(r"[a-z_][a-z0-9_]{0,62}")


class DatabaseFields(BaseModel):
    # postgresql://user:password@host:5432/db (a Supabase connection string works as is).
    database_url: SecretStr | None = None
    database_schema: str = "public"  # the tables and schema_migrations live in this schema
    sink_batch_size: Annotated[int, Field(ge=1, le=100_000)] = 2000  # outbox entries read per round
    sink_copy_rows: Annotated[int, Field(ge=1)] = 5000  # a table's rows in one batch from this many on go in by COPY
    sink_poll_interval: PositiveSeconds = 0.2  # an idle sink looks for new outbox entries this often
    sink_retry_interval: PositiveSeconds = 2.0  # wait after PostgreSQL failed before trying again
    sink_sweep_interval: PositiveSeconds = 60.0  # every outbox is checked this often (lost notifications)
    sink_claim_after: PositiveSeconds = 60.0  # a stopped sink's unacked entries are taken over after this
    database_timeout: PositiveSeconds = 10.0  # connecting and each statement

    @field_validator("database_url")
    @classmethod
    def _check_database_url(cls, url: SecretStr | None) -> SecretStr | None:
        # Messages never echo the URL: it carries a password.
        if url is None or not url.get_secret_value().strip():
            return None
        parts = urlsplit(url.get_secret_value().strip())
        if parts.scheme not in DATABASE_SCHEMES:
            raise ValueError("must start with postgresql:// (or postgres://)")
        try:
            parts.port
        except ValueError:
            raise ValueError("the port must be a number from 1 to 65535") from None
        return SecretStr(url.get_secret_value().strip())

    @field_validator("database_schema")
    @classmethod
    def _check_schema(cls, name: str) -> str:
        if not _SCHEMA_NAME.fullmatch(name):
            raise ValueError("must be 1-63 characters of a-z, 0-9 and _, not starting with a digit")
        return name

    @property
    def sink_enabled(self) -> bool:
        return self.database_url is not None

    def database_dsn(self) -> str:
        """The connection URL (with its password): only for the driver, never for a log."""
        assert self.database_url is not None, "no DATABASE_URL"
        return self.database_url.get_secret_value()

    def redacted_database_url(self) -> str:
        """host:port/database, safe for logs and errors."""
        if self.database_url is None:
            return "(none)"
        parts = urlsplit(self.database_url.get_secret_value())
        return f"{parts.hostname or 'localhost'}:{parts.port or 5432}{parts.path or ''}"
