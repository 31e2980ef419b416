"""Settings of the Redis deployment's shape: one server, a Cluster or a Sentinel-watched
primary, and how many replicas an acknowledged write waits for.
Mixed into `Settings`; each env name is the field name upper-cased (REDIS_CLUSTER).
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, Field, SecretStr, field_validator, model_validator
from pydantic_settings import NoDecode

from config.durations import PositiveSeconds

SENTINEL_PORT = 26379


class TopologyFields(BaseModel):
    # auto: INFO cluster on the first connection tells; yes / no skip the question.
    redis_cluster: Literal["auto", "yes", "no"] = "auto"
    # Writes a caller is told about wait for this many replicas (WAIT); 0 = do not wait.
    redis_wait_replicas: Annotated[int, Field(ge=0, le=16)] = 0
    redis_wait_timeout: PositiveSeconds = 1.0
    # Sentinel: the primary named redis_sentinel_master, found through these sentinels.
    redis_sentinels: Annotated[tuple[tuple[str, int], ...], NoDecode] = ()
    redis_sentinel_master: str | None = None
    redis_sentinel_username: str | None = None
    redis_sentinel_password: SecretStr | None = Field(default=None, repr=False)

    @field_validator("redis_cluster", mode="before")
    @classmethod
    def _lower(cls, value: object) -> object:
        return value.strip().lower() if isinstance(value, str) else value

    @field_validator("redis_sentinels", mode="before")
    @classmethod
    def _parse_sentinels(cls, value: object) -> object:
        """"host:port,host:port" (a bare host means port 26379; [::1]:26379 for IPv6)."""
        if not isinstance(value, str):
            return value
        sentinels = []
        for item in filter(None, (part.strip() for part in value.split(","))):
            host, colon, port = item.rpartition(":") if not item.endswith("]") else (item, "", "")
            if not colon:
                host, port = item, str(SENTINEL_PORT)
            host = host.strip("[]")
            if not host or not port.isdigit() or not 0 < int(port) < 65536:
                raise ValueError(f"{item!r} is not host:port (e.g. 10.0.0.5:26379)")
            sentinels.append((host, int(port)))
        return tuple(sentinels)

    @model_validator(mode="after")
    def _check_sentinel(self) -> TopologyFields:
        if self.redis_sentinels and not self.redis_sentinel_master:
            raise ValueError("REDIS_SENTINELS needs REDIS_SENTINEL_MASTER, the name the sentinels monitor")
        if self.redis_sentinel_master and not self.redis_sentinels:
            raise ValueError("REDIS_SENTINEL_MASTER needs REDIS_SENTINELS (host:port,...)")
        if self.redis_sentinels and self.redis_cluster == "yes":
            raise ValueError("REDIS_CLUSTER=yes and REDIS_SENTINELS exclude each other: "
                             "a Redis Cluster fails over by itself")
        return self

    @property
    def redis_sentinel_mode(self) -> bool:
        return bool(self.redis_sentinels)
