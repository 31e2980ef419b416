"""Settings of the HTTP API (tokens, limits, bind address). Mixed into `Settings`."""

from __future__ import annotations

from pydantic import BaseModel


class ApiFields(BaseModel):
    """Fields are added here by the API work; env names are the field names upper-cased."""
