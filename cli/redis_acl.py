"""`tgjobs redis-acl`: the `ACL SETUSER` line giving a Redis user exactly what one role
of tgjobs needs. Keys: this deployment's prefix only (every key is `{<prefix>:...}`,
see streams/keys.py); pub/sub channels: none; commands: those the role sends, and those
the Lua scripts it runs call (Redis checks a script's commands and keys against the
caller's ACL too). The password goes in hashed (`#<sha256>`), so the line can be kept
in a file or a shell history without it.

Scripts are loaded with SCRIPT LOAD and run with EVALSHA (EVAL is not granted). Redis
Functions (FUNCTION LOAD at deploy, FCALL at run) were weighed and not taken: a script
runs under its caller's ACL, so EVALSHA lets a worker's credential do nothing its
command and key grants do not already allow, while Functions would add a deploy step
that must reach every primary of a cluster and match the running code's version at
every rolling upgrade (README, "Redis users").
"""

from __future__ import annotations

import argparse
import hashlib
import re

from cli.common import EXIT_USAGE, CliError, CommandAdder
from config import Settings

# What every client sends: health checks, the version and eviction checks (INFO), scripts,
# and WAIT for replicas (REDIS_WAIT_REPLICAS).
_CONNECTION = ("ping", "info", "evalsha", "script|load", "script|exists", "time", "wait")
# Job records, indexes, idempotency keys and dead letters, from Python and from the scripts.
_RECORDS = ("get", "set", "mget", "del", "exists", "expire", "pexpire", "pexpireat",
            "hget", "hset", "hmget", "hgetall", "hvals", "hdel", "hincrby",
            "zadd", "zrem", "zrange", "zrangebyscore", "zrevrange", "zcard", "zcount", "zmscore", "zscore", "zincrby",
            "zremrangebyscore", "zremrangebyrank", "zscan",
            "sadd", "srem", "smembers", "sunion", "lrange", "lpush", "rpush", "ltrim",
            "multi", "exec", "discard", "watch", "unwatch")
_STREAMS_READ = ("xrange", "xrevrange", "xlen", "xread", "xpending", "xinfo|groups", "xinfo|consumers")
_STREAMS_WRITE = ("xadd", "xack", "xdel", "xtrim")
_CONSUMING = ("xreadgroup", "xclaim", "xautoclaim", "xgroup|create", "xgroup|delconsumer", "sscan")

ROLE_COMMANDS: dict[str, tuple[str, ...]] = {
    # Producer and the signals SDK: add.lua (idempotency key, record, entry, index, event) and raw XADDs.
    "producer": ("ping", "info", "evalsha", "script|load", "time", "wait",
                 "get", "set", "exists", "hset", "zadd", "xadd"),
    # The HTTP API: adds jobs, answers every read, runs the admin scripts (pause, retry,
    # remove, clean, replay, purge), writes the audit trail, follows live events.
    "api": (*_CONNECTION, *_RECORDS, *_STREAMS_READ, *_STREAMS_WRITE),
    # Worker processes (and `tgjobs sink`): read as a consumer group, claim, settle, trim,
    # reap, write the processors' records, their outbox and the worker registry.
    "worker": (*_CONNECTION, *_RECORDS, *_STREAMS_READ, *_STREAMS_WRITE, *_CONSUMING),
}
ROLES = (*ROLE_COMMANDS, "all")
_USER = re.compile(r"[A-Za-z0-9_.@-]{1,64}")


def add_commands(command: CommandAdder) -> None:
    acl = command("redis-acl", "print the ACL SETUSER line of a least-privilege Redis user for a role", cmd_redis_acl)
    acl.add_argument("--user", required=True, help="the Redis user name")
    acl.add_argument("--password", required=True, help="its password (printed only as its SHA-256)")
    acl.add_argument("--role", choices=ROLES, default="all",
                     help="what the user runs: api, worker, producer, or all (default: one process running "
                          "everything, as `tgjobs up` does)")


def role_commands(role: str) -> list[str]:
    if role == "all":
        return sorted({c for commands in ROLE_COMMANDS.values() for c in commands})
    return sorted(set(ROLE_COMMANDS[role]))


def acl_setuser(user: str, password: str, role: str, key_prefix: str) -> str:
    """The line; `reset` first, so running it again leaves exactly these rights."""
    digest = hashlib.sha256(password.encode()).hexdigest()
    commands = " ".join(f"+{c}" for c in role_commands(role))
    return f"ACL SETUSER {user} reset on #{digest} resetchannels ~{{{key_prefix}:* -@all {commands}"


def cmd_redis_acl(args: argparse.Namespace, settings: Settings) -> int:
    if not _USER.fullmatch(args.user):
        raise CliError("--user must be 1-64 characters of letters, digits, '_', '.', '@' and '-'", EXIT_USAGE)
    if not args.password:
        raise CliError("--password must not be empty", EXIT_USAGE)
    print(acl_setuser(args.user, args.password, args.role, settings.key_prefix))
    return 0
