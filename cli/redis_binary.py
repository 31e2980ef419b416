"""Finding the ``redis-server`` binary for the embedded Redis: on PATH or in the usual
directories, installed with apt-get when root asks for it, or an error that says how.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

BINARY = "redis-server"
FALLBACK_DIRS: tuple[Path, ...] = (Path("/usr/bin"), Path("/usr/sbin"))
APT_PACKAGE = "redis-server"


class EmbeddedRedisError(RuntimeError):
    """Root of this module's errors."""


class RedisServerNotFound(EmbeddedRedisError):
    """No ``redis-server`` on PATH nor in FALLBACK_DIRS; says how to install it."""


def install_command() -> str:
    """The shell command that installs redis-server here (with sudo when not root)."""
    sudo = "" if os.geteuid() == 0 else "sudo "
    return f"{sudo}apt-get update && {sudo}apt-get install -y {APT_PACKAGE}"


def find_redis_server(install: bool = False) -> str:
    """Path of ``redis-server``; ``install=True`` lets root apt-get it first."""
    found = _locate()
    if found is None and install and os.geteuid() == 0 and shutil.which("apt-get"):
        _apt_install()
        found = _locate()
    if found is None:
        searched = ", ".join(["PATH", *(str(d) for d in FALLBACK_DIRS)])
        raise RedisServerNotFound(
            f"{BINARY} not found (searched {searched}); "
            f"install it with: {install_command()}"
        )
    return found


def _locate() -> str | None:
    on_path = shutil.which(BINARY)
    if on_path:
        return on_path
    for directory in FALLBACK_DIRS:
        candidate = directory / BINARY
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return str(candidate)
    return None


def _apt_install() -> None:
    noninteractive = ["env", "DEBIAN_FRONTEND=noninteractive"]
    try:
        for command in (
            [*noninteractive, "apt-get", "update", "-qq"],
            [*noninteractive, "apt-get", "install", "-y", "-qq", APT_PACKAGE],
        ):
            subprocess.run(command, check=True, stdin=subprocess.DEVNULL)
    except (OSError, subprocess.CalledProcessError) as err:
        raise RedisServerNotFound(f"installing {APT_PACKAGE} failed: {err}") from err
