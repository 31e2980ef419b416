"""The audit trail: every management action (pause, resume, clean, remove, retry,
replay, purge) with who asked, when, what and its effect, in one capped Redis stream.

Handlers record through `AuditTrail.record`; GET /api/audit reads it newest first.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import orjson
from redis.asyncio import Redis
from redis.exceptions import RedisError

from streams.admin import audit_key

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class AuditEntry:
    id: str  # the stream entry id; its first part is the time in ms (Redis clock)
    who: str
    role: str
    action: str
    target: str  # a queue name or a job id
    params: dict[str, Any]
    effect: dict[str, Any]
    request_id: str

    @property
    def at_ms(self) -> int:
        return int(self.id.split("-", 1)[0])

    @classmethod
    def from_entry(cls, entry_id: str, f: dict[str, str]) -> AuditEntry:
        return cls(entry_id, f.get("who", ""), f.get("role", ""), f.get("action", ""), f.get("target", ""),
                   orjson.loads(f.get("params") or "{}"), orjson.loads(f.get("effect") or "{}"),
                   f.get("requestId", ""))


class AuditTrail:
    def __init__(self, redis: Redis, prefix: str, max_len: int) -> None:
        self.redis = redis
        self.key = audit_key(prefix)
        self.max_len = max_len

    async def record(self, *, who: str, role: str, action: str, target: str, params: dict[str, Any],
                     effect: dict[str, Any], request_id: str) -> None:
        """Appends one entry (Redis stamps the time). The action it describes has already
        happened, so a failure here is logged with the whole entry rather than turned
        into an error for a caller who would then retry a done action."""
        fields = {"who": who, "role": role, "action": action, "target": target,
                  "params": orjson.dumps(params).decode(), "effect": orjson.dumps(effect).decode(),
                  "requestId": request_id}
        try:
            await self.redis.xadd(self.key, fields, maxlen=self.max_len, approximate=True)
        except (RedisError, OSError):
            log.exception("audit entry not recorded: %s", fields)

    async def page(self, before: str | None, limit: int) -> tuple[list[AuditEntry], str | None]:
        """Up to `limit` entries, newest first, older than entry id `before`; and the
        cursor of the next page (None on the last)."""
        if before is not None and not any(int(part) for part in before.split("-")):
            return [], None  # nothing is older than 0-0 (and Redis refuses the range "(0-0")
        rows = await self.redis.xrevrange(self.key, f"({before}" if before else "+", "-", count=limit + 1)
        entries = [AuditEntry.from_entry(entry_id, fields) for entry_id, fields in rows[:limit]]
        return entries, entries[-1].id if len(rows) > limit else None
