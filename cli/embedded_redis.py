"""Run a private ``redis-server`` (found by cli.redis_binary) as a child process on a
loopback port.

Used by ``tgjobs up`` / ``tgjobs redis`` when REDIS_URL is unset, and by the test suite
for a throwaway server. Standard library only: readiness is a raw ``PING`` on a socket.
"""

from __future__ import annotations

import shutil
import signal
import socket
import subprocess
import tempfile
import time
import weakref
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType
from urllib.parse import quote

from cli.redis_binary import BINARY, EmbeddedRedisError, find_redis_server

LOOPBACK = "127.0.0.1"

START_TIMEOUT_S = 10.0
STOP_TIMEOUT_S = 10.0
PING_TIMEOUT_S = 0.5
POLL_INTERVAL_S = 0.02
PORT_ATTEMPTS = 5
LOG_TAIL_LINES = 20
ADDRESS_IN_USE = "Address already in use"


class RedisStartError(EmbeddedRedisError):
    """The server exited or did not answer PING in time; carries the tail of its log."""


def free_port() -> int:
    """A loopback port that was free a moment ago (the kernel picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((LOOPBACK, 0))
        port: int = sock.getsockname()[1]
        return port


def ping(port: int, timeout_s: float = PING_TIMEOUT_S, password: str | None = None) -> bool:
    """True when a server on ``LOOPBACK:port`` answers ``+PONG`` (not while loading);
    ``password`` is sent with AUTH first (the server's ``requirepass``)."""
    commands = ([] if password is None else [_resp(b"AUTH", password.encode())]) + [_resp(b"PING")]
    try:
        with socket.create_connection((LOOPBACK, port), timeout=timeout_s) as sock:
            sock.sendall(b"".join(commands))
            reply = b""
            while reply.count(b"\r\n") < len(commands):  # one line per command
                chunk = sock.recv(64)
                if not chunk:
                    return False
                reply += chunk
            return reply.endswith(b"+PONG\r\n")
    except OSError:
        return False


def _resp(*words: bytes) -> bytes:
    """One command in the protocol's array form (a password may hold spaces)."""
    return b"*%d\r\n" % len(words) + b"".join(b"$%d\r\n%s\r\n" % (len(w), w) for w in words)


class EmbeddedRedis:
    """One ``redis-server`` child process bound to 127.0.0.1, its data in ``data_dir``.

    ``data_dir=None`` uses a private temp dir, removed by ``stop()``. ``port=None``
    picks a free port, picked again if taken at first start; ``restart()`` keeps the
    port and the dir.
    """

    def __init__(
        self,
        data_dir: Path | None,
        port: int | None = None,
        appendonly: bool = True,
        install: bool = False,
        extra_args: Sequence[str] = (),
        password: str | None = None,
    ) -> None:
        self._data_dir = Path(data_dir).resolve() if data_dir is not None else None
        self._private_dir: Path | None = None
        self._port = port if port is not None else free_port()
        self._may_repick_port = port is None
        self._appendonly = appendonly
        self._install = install
        self._extra_args = tuple(extra_args)
        self._password = password
        self._proc: subprocess.Popen[bytes] | None = None
        # Stops the server at interpreter exit if the owner forgot to.
        self._finalizer: (
            weakref.finalize[[subprocess.Popen[bytes]], EmbeddedRedis] | None
        ) = None

    @property
    def port(self) -> int:
        return self._port

    @property
    def url(self) -> str:
        auth = f":{quote(self._password, safe='')}@" if self._password is not None else ""
        return f"redis://{auth}{LOOPBACK}:{self._port}/0"

    @property
    def pid(self) -> int | None:
        """The server's process id while it runs, else None."""
        return self._proc.pid if self.running and self._proc is not None else None

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    @property
    def data_dir(self) -> Path:
        """Where the AOF and ``redis.log`` live (a temp dir is made on first use)."""
        if self._data_dir is not None:
            return self._data_dir
        if self._private_dir is None:
            self._private_dir = Path(tempfile.mkdtemp(prefix="tgjobs-redis-"))
        return self._private_dir

    @property
    def log_path(self) -> Path:
        return self.data_dir / "redis.log"

    def __enter__(self) -> EmbeddedRedis:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def start(self) -> None:
        """Spawn the server and return once it answers PING; no-op while it runs."""
        if self.running:
            return
        binary = find_redis_server(install=self._install)
        self.data_dir.mkdir(parents=True, exist_ok=True)
        for attempt in range(1, PORT_ATTEMPTS + 1):
            log_offset = self._log_size()
            self._spawn(binary)
            try:
                self._wait_ready(log_offset)
            except RedisStartError as err:
                self._terminate()
                retry = self._may_repick_port and attempt < PORT_ATTEMPTS
                if not (retry and ADDRESS_IN_USE in str(err)):
                    raise
                self._port = free_port()
            else:
                self._may_repick_port = False
                return

    def stop(self) -> None:
        """SIGTERM (SIGKILL after STOP_TIMEOUT_S), remove a private temp dir."""
        # Idempotent: a stopped or never-started server is left as it is.
        self._terminate()
        if self._private_dir is not None:
            shutil.rmtree(self._private_dir, ignore_errors=True)
            self._private_dir = None

    def kill(self) -> None:
        """SIGKILL now and reap, as a crash would; the data dir stays for restart()."""
        proc = self._proc
        if proc is not None and proc.poll() is None:
            proc.kill()
            proc.wait()
        self._forget_process()

    def restart(self) -> None:
        """Stop (if running) and start again on the same port and data dir."""
        self._terminate()
        self.start()

    def _command(self, binary: str) -> list[str]:
        return [
            binary,
            "--port", str(self._port),
            "--bind", LOOPBACK,
            "--dir", str(self.data_dir),
            "--appendonly", "yes" if self._appendonly else "no",
            "--appendfsync", "everysec",
            "--save", "",
            "--daemonize", "no",
            "--protected-mode", "yes",
            "--logfile", str(self.log_path),
            *(("--requirepass", self._password) if self._password is not None else ()),
            *self._extra_args,
        ]  # fmt: skip

    def _spawn(self, binary: str) -> None:
        # Config errors reach stderr before the logfile opens: append stderr to the log.
        with self.log_path.open("ab") as stderr:
            self._proc = subprocess.Popen(
                self._command(binary),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=stderr,
                cwd=self.data_dir,
            )
        self._finalizer = weakref.finalize(self, _terminate_process, self._proc)

    def _wait_ready(self, log_offset: int) -> None:
        assert self._proc is not None
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            if self._proc.poll() is not None:
                raise RedisStartError(
                    f"{BINARY} on port {self._port} exited with code "
                    f"{self._proc.returncode}; {self._log_tail(log_offset)}"
                )
            if ping(self._port, password=self._password):
                return
            if time.monotonic() >= deadline:
                raise RedisStartError(
                    f"{BINARY} on port {self._port} did not answer PING within "
                    f"{START_TIMEOUT_S:g} s; {self._log_tail(log_offset)}"
                )
            time.sleep(POLL_INTERVAL_S)

    def _terminate(self) -> None:
        if self._proc is not None:
            _terminate_process(self._proc)
        self._forget_process()

    def _forget_process(self) -> None:
        if self._finalizer is not None:
            self._finalizer.detach()
            self._finalizer = None
        self._proc = None

    def _log_size(self) -> int:
        try:
            return self.log_path.stat().st_size
        except FileNotFoundError:
            return 0

    def _log_tail(self, offset: int) -> str:
        try:
            with self.log_path.open("rb") as log:
                log.seek(offset)
                text = log.read().decode("utf-8", "replace")
        except OSError as err:
            return f"no log at {self.log_path} ({err})"
        lines = text.strip().splitlines()[-LOG_TAIL_LINES:]
        return f"last lines of {self.log_path}:\n" + "\n".join(lines)


def _terminate_process(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM (Redis fsyncs its AOF and exits), SIGKILL if it lingers; always reaps."""
    if proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=STOP_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
