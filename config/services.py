"""Settings of the outside services the processors use (LLM, news feeds, people data,
SMTP, time zone, signal types and weights). Mixed into `Settings`."""

from __future__ import annotations

from pydantic import BaseModel


class ServiceFields(BaseModel):
    """Fields are added here by the processors work; env names are the field names upper-cased."""
