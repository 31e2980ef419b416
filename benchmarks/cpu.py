"""Where the CPU went during a measurement: this process's own (rusage), the whole
machine's busy and idle time (/proc/stat), and each Redis master's (INFO cpu).
"""

from __future__ import annotations

import contextlib
import os
import resource

import redis as sync_redis


def machine_cpu() -> tuple[float, float] | None:
    """Seconds of CPU the whole machine spent busy and idle since boot (/proc/stat)."""
    with contextlib.suppress(OSError):
        with open("/proc/stat") as stat:
            ticks = [int(t) for t in stat.readline().split()[1:]]
        tick_s = 1 / os.sysconf("SC_CLK_TCK")
        idle = ticks[3] + ticks[4]  # idle, iowait
        # user, nice, system, irq, softirq and steal are busy (guest time is inside user)
        return (sum(ticks[:8]) - idle) * tick_s, idle * tick_s
    return None


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def redis_cpu(client: sync_redis.Redis | sync_redis.RedisCluster) -> dict[str, float]:
    """CPU seconds (user + system) each master has used since it started."""
    if isinstance(client, sync_redis.RedisCluster):
        nodes = {node.name: client.get_redis_connection(node) for node in client.get_primaries()}
    else:
        nodes = {"redis": client}
    return {name: float(info["used_cpu_user"]) + float(info["used_cpu_sys"])
            for name, info in ((name, node.info("cpu")) for name, node in nodes.items())}
