"""The seed policy table, and how overrides merge onto it one field at a time.

`DEFAULT_POLICIES` holds the four built-in queues; `NEW_QUEUE_DEFAULTS` fills the fields
a brand-new queue row leaves out. `Settings` calls `merge_policy_rows` on whatever the
environment, TOML file and keyword arguments gave for `queues`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from config.policy import QueuePolicy, RateLimit

MINUTE = 60.0
HOUR = 3600.0

DEFAULT_POLICIES: dict[str, QueuePolicy] = {
    "research": QueuePolicy(
        attempts=3, backoff="exponential", backoff_delay=2.0, rate_limit=RateLimit(max=10, per=MINUTE),
        concurrency=5, timeout=5 * MINUTE, keep_completed=100, keep_failed=50,
    ),
    "enrichment": QueuePolicy(
        attempts=2, backoff="fixed", backoff_delay=5.0, rate_limit=RateLimit(max=50, per=MINUTE),
        concurrency=10, timeout=1 * MINUTE, keep_completed=100, keep_failed=50,
    ),
    "reports": QueuePolicy(
        attempts=2, backoff="fixed", backoff_delay=1.0, rate_limit=RateLimit(max=20, per=HOUR),
        concurrency=2, timeout=10 * MINUTE, keep_completed=100, keep_failed=50,
    ),
    "signals": QueuePolicy(
        attempts=5, backoff="exponential", backoff_delay=1.0, rate_limit=None,
        concurrency=50, timeout=10.0, keep_completed=100, keep_failed=50,
        records=False, batch_size=500, partition_by="companyId",
    ),
}

NEW_QUEUE_DEFAULTS = QueuePolicy(
    attempts=3, backoff="exponential", backoff_delay=1.0, rate_limit=None,
    concurrency=5, timeout=1 * MINUTE, keep_completed=100, keep_failed=50,
)


def merge_policy_rows(overrides: Any) -> Any:
    """Lay each override row over its default row (or `NEW_QUEUE_DEFAULTS`), field by field.

    Anything that is not a mapping of mappings is passed through untouched so pydantic
    reports it against the right setting name.
    """
    if not isinstance(overrides, Mapping):
        return overrides
    merged: dict[Any, Any] = dict(DEFAULT_POLICIES)
    for name, row in overrides.items():
        if isinstance(row, Mapping):
            base = DEFAULT_POLICIES.get(name, NEW_QUEUE_DEFAULTS)
            merged[name] = _merge_row(base, row)
        else:
            merged[name] = row
    return merged


def _merge_row(base: QueuePolicy, row: Mapping[str, Any]) -> dict[str, Any]:
    fields = base.model_dump()
    for key, value in row.items():
        # A partial rate limit (QUEUES__X__RATE_LIMIT__MAX=20) keeps the default window.
        if key == "rate_limit" and isinstance(value, Mapping) and isinstance(fields.get(key), dict):
            fields[key] = {**fields[key], **value}
        else:
            fields[key] = value
    return fields
