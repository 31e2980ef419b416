"""A throwaway PostgreSQL for the tests and benchmarks: `initdb` into a private temp dir,
`pg_ctl` on a free loopback port with its unix socket in that dir, never the machine's
own server. As root, the server runs as the `postgres` user (PostgreSQL refuses root).
TEST_DATABASE_URL=postgresql://... uses that server instead (it cannot be stopped).
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from cli.embedded_redis import LOOPBACK, free_port

SERVER_USER = "postgres"
PG_BIN_GLOB = "/usr/lib/postgresql/*/bin"
START_TIMEOUT_S = 30


class PostgresUnavailable(RuntimeError):
    """No PostgreSQL binaries on this machine (install the Debian package `postgresql`)."""


def pg_bin_dir() -> Path:
    """The newest PostgreSQL's bin dir (Debian's layout), else the one holding `pg_ctl` on the PATH."""
    dirs = sorted(glob.glob(PG_BIN_GLOB), key=lambda d: int(Path(d).parent.name) if Path(d).parent.name.isdigit() else 0)
    for candidate in reversed(dirs):
        if (Path(candidate) / "pg_ctl").exists():
            return Path(candidate)
    found = shutil.which("pg_ctl")
    if found:
        return Path(found).parent
    raise PostgresUnavailable("no PostgreSQL binaries (initdb, pg_ctl): apt-get install postgresql")


class TemporaryPostgres:
    """One private server; `stop()` and `start()` keep its port and data (tests take the
    database away and bring it back), `close()` stops it and removes everything."""

    def __init__(self) -> None:
        self.bin = pg_bin_dir()
        self.root = Path(tempfile.mkdtemp(prefix="tgjobs-pg-"))
        self.data = self.root / "data"
        self.port = free_port()
        self._as_user: list[str] = []
        if os.geteuid() == 0:
            user = pwd.getpwnam(SERVER_USER)
            os.chown(self.root, user.pw_uid, user.pw_gid)
            self._as_user = ["runuser", "-u", SERVER_USER, "--"]
        self._run("initdb", "-D", str(self.data), "-U", "postgres", "-A", "trust", "-E", "UTF8",
                  "--no-sync", "--locale=C")
        self.running = False

    @property
    def url(self) -> str:
        return f"postgresql://postgres@{LOOPBACK}:{self.port}/postgres"

    def start(self) -> None:
        options = (f"-p {self.port} -k {self.root} -c listen_addresses={LOOPBACK} -c fsync=off "
                   "-c synchronous_commit=off -c full_page_writes=off")
        self._run("pg_ctl", "-D", str(self.data), "-o", options, "-l", str(self.root / "server.log"),
                  "-w", "-t", str(START_TIMEOUT_S), "start")
        self.running = True

    def stop(self) -> None:
        if self.running:
            self._run("pg_ctl", "-D", str(self.data), "-m", "fast", "-w", "stop")
            self.running = False

    def close(self) -> None:
        try:
            self.stop()
        finally:
            shutil.rmtree(self.root, ignore_errors=True)

    def _run(self, tool: str, *args: str) -> None:
        done = subprocess.run([*self._as_user, str(self.bin / tool), *args], capture_output=True, text=True,
                              timeout=START_TIMEOUT_S * 2, check=False, stdin=subprocess.DEVNULL)
        if done.returncode != 0:
            log = self.root / "server.log"
            tail = log.read_text()[-2000:] if log.exists() else ""
            raise RuntimeError(f"{tool} failed ({done.returncode}): {done.stderr[-2000:]}{tail}")


@contextmanager
def temporary_postgres() -> Iterator[TemporaryPostgres]:
    server = TemporaryPostgres()
    try:
        server.start()
        yield server
    finally:
        server.close()


@contextmanager
def postgres_url(override: str | None) -> Iterator[tuple[str, TemporaryPostgres | None]]:
    """The URL to test against: `override` (TEST_DATABASE_URL) as given, else a private
    server's; the server is None when it is not ours to stop."""
    if override:
        yield override, None
        return
    with temporary_postgres() as server:
        yield server.url, server
