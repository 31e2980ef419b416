"""Hosts as Linux network namespaces, for tests across hosts (root and iproute2 only).

A `NetnsLab` is one Redis host and some worker hosts, each a namespace named
`tg-<random>-<host>`. Every worker host has one veth pair: `eth0` on its side, the
other end plugged into a bridge in the Redis host's namespace, on a private /24 that
exists only inside these namespaces, so no packet leaves them. `cut(host)` takes that
host's end at the bridge down: its packets are then silently lost, as in a network
partition (no reset, no error: connections hang until their timeouts), and `heal(host)`
plugs it back. The test itself reaches Redis on a unix socket, which a network
namespace does not isolate, so it keeps watching while a host is cut off.

`destroy()` tears it all down: the processes started here, then the namespaces, which
take their links along.
"""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path

import redis

from cli.redis_binary import find_redis_server

SUBNET = "10.231.12"  # a /24 that exists only inside the lab's namespaces
REDIS_ADDRESS = f"{SUBNET}.1"
REDIS_PORT = 6390  # inside the Redis namespace: no other server can hold it
START_TIMEOUT_S = 10.0


class LabUnavailable(Exception):
    """Network namespaces cannot be made here; the message says why."""


def unavailable_reason() -> str | None:
    """Why this machine cannot host a lab, or None when it can."""
    if os.geteuid() != 0:
        return "needs root: it creates network namespaces and veth pairs"
    if shutil.which("ip") is None:
        return "needs the ip command (apt-get install iproute2)"
    return None


def ip(*args: str) -> None:
    result = subprocess.run(["ip", *args], stdin=subprocess.DEVNULL, capture_output=True, text=True)
    if result.returncode != 0:
        raise RuntimeError(f"ip {' '.join(args)}: {result.stderr.strip()}")


class NetnsLab:
    def __init__(self, workers: Sequence[str]) -> None:
        tag = secrets.token_hex(4)
        self.redis_ns = f"tg-{tag}-redis"
        self.worker_ns = {host: f"tg-{tag}-{host}" for host in workers}
        self.addresses = {host: f"{SUBNET}.{i}" for i, host in enumerate(workers, start=2)}
        self._made: list[str] = []
        self._processes: list[subprocess.Popen[bytes]] = []

    @property
    def redis_url(self) -> str:
        """Redis as the worker hosts reach it, across their links."""
        return f"redis://{REDIS_ADDRESS}:{REDIS_PORT}/0"

    def create(self) -> None:
        """Makes the namespaces and wires them; raises LabUnavailable when the kernel
        refuses namespaces (a container without CAP_SYS_ADMIN, say)."""
        try:
            self._add_namespace(self.redis_ns)
        except RuntimeError as err:
            raise LabUnavailable(str(err)) from None
        ip("-n", self.redis_ns, "link", "add", "br0", "type", "bridge")
        ip("-n", self.redis_ns, "addr", "add", f"{REDIS_ADDRESS}/24", "dev", "br0")
        ip("-n", self.redis_ns, "link", "set", "br0", "up")
        for host, ns in self.worker_ns.items():
            self._add_namespace(ns)
            ip("-n", ns, "link", "add", "eth0", "type", "veth", "peer", "name", self.cable(host),
               "netns", self.redis_ns)
            ip("-n", ns, "addr", "add", f"{self.addresses[host]}/24", "dev", "eth0")
            ip("-n", ns, "link", "set", "eth0", "up")
            ip("-n", self.redis_ns, "link", "set", self.cable(host), "master", "br0")
            self.heal(host)

    def _add_namespace(self, ns: str) -> None:
        ip("netns", "add", ns)
        self._made.append(ns)
        ip("-n", ns, "link", "set", "lo", "up")

    @staticmethod
    def cable(host: str) -> str:
        """The name of a worker host's link end at the bridge (in the Redis namespace)."""
        return f"to-{host}"

    def cut(self, host: str) -> None:
        ip("-n", self.redis_ns, "link", "set", self.cable(host), "down")

    def heal(self, host: str) -> None:
        ip("-n", self.redis_ns, "link", "set", self.cable(host), "up")

    def popen(self, host: str | None, argv: Sequence[str], *, log_path: Path,
              cwd: Path) -> subprocess.Popen[bytes]:
        """Starts `argv` inside a worker host (None: the Redis host), stderr to `log_path`.
        `ip netns exec` execs the command itself, so the pid is the command's."""
        ns = self.redis_ns if host is None else self.worker_ns[host]
        with log_path.open("ab") as stderr:
            proc = subprocess.Popen(["ip", "netns", "exec", ns, *argv], cwd=cwd, stdin=subprocess.DEVNULL,
                                    stdout=subprocess.DEVNULL, stderr=stderr)
        self._processes.append(proc)
        return proc

    def start_redis(self, data_dir: Path) -> Path:
        """Starts redis-server in the Redis host, listening on the bridge and on a unix
        socket in `data_dir` (for the test); returns the socket's path once it answers."""
        data_dir.mkdir(parents=True, exist_ok=True)
        socket_path = data_dir / "redis.sock"
        log_path = data_dir / "redis.log"
        proc = self.popen(None, [find_redis_server(), "--bind", REDIS_ADDRESS, "--port", str(REDIS_PORT),
                                 "--unixsocket", str(socket_path), "--unixsocketperm", "700",
                                 "--protected-mode", "no", "--save", "", "--appendonly", "no",
                                 "--dir", str(data_dir), "--logfile", str(log_path)],
                          log_path=log_path, cwd=data_dir)
        client = redis.Redis(unix_socket_path=str(socket_path), socket_timeout=1)
        deadline = time.monotonic() + START_TIMEOUT_S
        try:
            while True:
                try:
                    if client.ping():
                        return socket_path
                except redis.RedisError:
                    pass
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"redis-server in {self.redis_ns} did not start:\n"
                                       + log_path.read_text(errors="replace")[-2000:])
                time.sleep(0.05)
        finally:
            client.close()

    def destroy(self) -> None:
        """SIGKILLs what was started here and deletes the namespaces, each even when
        another could not be; then raises the first failure."""
        for proc in self._processes:
            if proc.poll() is None:
                proc.kill()
            proc.wait()
        errors: list[RuntimeError] = []
        for ns in reversed(self._made):
            try:
                ip("netns", "delete", ns)
            except RuntimeError as err:
                errors.append(err)
        self._made.clear()
        if errors:
            raise errors[0]
