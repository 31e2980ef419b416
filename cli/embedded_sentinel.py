"""A private Sentinel deployment on loopback: a primary, its replicas (``--replicaof``)
and the sentinels watching it (``redis-server CONF --sentinel``, one config file each),
every process an ``EmbeddedRedis`` child. Short failure detection by default, so a
killed primary is replaced within seconds.

Used by the Sentinel tests; ``python -m cli.embedded_sentinel`` runs one for trying
tgjobs against Sentinel by hand (it prints the settings to use).
"""

from __future__ import annotations

import shutil
import signal
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import Any

import redis

from cli.embedded_redis import LOOPBACK, EmbeddedRedis, RedisStartError

SETTLE_TIMEOUT_S = 30.0
POLL_S = 0.1


class SentinelProcess(EmbeddedRedis):
    """``redis-server CONF --sentinel``: the config file comes first and must be writable
    (a sentinel rewrites it with what it learns: replicas, other sentinels, epochs)."""

    def __init__(self, data_dir: Path, config: str, password: str | None) -> None:
        super().__init__(data_dir, appendonly=False, password=password)
        self._config = config

    @property
    def config_path(self) -> Path:
        return self.data_dir / "sentinel.conf"

    def _command(self, binary: str) -> list[str]:
        if not self.config_path.exists():
            self.config_path.write_text(self._config)
        return [binary, str(self.config_path), "--sentinel", *super()._command(binary)[1:]]


class EmbeddedSentinel:
    """A primary named ``master_name`` with ``replicas`` replicas, watched by ``sentinels``
    sentinels (quorum: a majority). ``password`` protects the data nodes (``requirepass``,
    ``masterauth``, ``sentinel auth-pass``); ``sentinel_password`` the sentinels themselves."""

    def __init__(self, master_name: str = "tgjobs", replicas: int = 1, sentinels: int = 3, *,
                 data_dir: Path | None = None, password: str | None = None, sentinel_password: str | None = None,
                 down_after_ms: int = 1000, failover_timeout_ms: int = 3000) -> None:
        if replicas < 1 or sentinels < 1:
            raise ValueError("a Sentinel deployment needs at least one replica and one sentinel")
        self.master_name = master_name
        self.password = password
        self.sentinel_password = sentinel_password
        self._private_dir = data_dir is None
        self._dir = Path(data_dir) if data_dir is not None else Path(tempfile.mkdtemp(prefix="tgjobs-sentinel-"))
        # A replica's first sync starts at once, not after the default 5 s wait for others.
        args = ("--repl-diskless-sync-delay", "0", *(("--masterauth", password) if password is not None else ()))
        first = EmbeddedRedis(self._dir / "node-0", appendonly=False, password=password, extra_args=args)
        self.nodes = [first] + [
            EmbeddedRedis(self._dir / f"node-{i}", appendonly=False, password=password,
                          extra_args=(*args, "--replicaof", LOOPBACK, str(first.port)))
            for i in range(1, replicas + 1)]
        config = "\n".join([
            f"sentinel monitor {master_name} {LOOPBACK} {first.port} {sentinels // 2 + 1}",
            f"sentinel down-after-milliseconds {master_name} {down_after_ms}",
            f"sentinel failover-timeout {master_name} {failover_timeout_ms}",
            *([f"sentinel auth-pass {master_name} {_quoted(password)}"] if password is not None else []),
            ""])
        self.sentinels = [SentinelProcess(self._dir / f"sentinel-{i}", config, sentinel_password)
                          for i in range(sentinels)]

    @property
    def addresses(self) -> str:
        """The sentinels as REDIS_SENTINELS takes them: ``host:port,host:port,...``."""
        return ",".join(f"{LOOPBACK}:{s.port}" for s in self.sentinels)

    def __enter__(self) -> EmbeddedSentinel:
        self.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()

    def start(self) -> None:
        """Every process started, the replicas in sync, and every sentinel aware of every
        replica and of the other sentinels (else a failover could not be agreed on)."""
        try:
            for node in self.nodes:
                node.start()
            self._until(lambda: all(self._info(n).get("master_link_status") == "up" for n in self.nodes[1:]),
                        "the replicas to sync")
            for sentinel in self.sentinels:
                sentinel.start()
            self._until(self._sentinels_settled, "the sentinels to find the replicas and each other")
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        for process in [*self.sentinels, *self.nodes]:
            process.stop()
        if self._private_dir:
            shutil.rmtree(self._dir, ignore_errors=True)

    def primary(self) -> EmbeddedRedis:
        """The node the sentinels name as primary now (after a failover, a former replica)."""
        host, port = self._ask_sentinels("SENTINEL", "GET-MASTER-ADDR-BY-NAME", self.master_name)
        return next(node for node in self.nodes if node.port == int(port))

    def failover(self) -> EmbeddedRedis:
        """A coordinated failover (SENTINEL FAILOVER): the primary is demoted to a replica
        of the one promoted, as for maintenance; returns the new primary."""
        old = self.primary()
        self._ask_sentinels("SENTINEL", "FAILOVER", self.master_name)
        return self.wait_failover(old)

    def wait_failover(self, old: EmbeddedRedis, timeout_s: float = SETTLE_TIMEOUT_S) -> EmbeddedRedis:
        """Until the sentinels name another primary than ``old`` and it says it is one."""
        def promoted() -> bool:
            new = self.primary()
            return new is not old and self.role(new) == "master"

        self._until(promoted, "the sentinels to promote a replica", timeout_s)
        return self.primary()

    def role(self, node: EmbeddedRedis) -> str:
        """What `node` says it is: "master" or "slave" (a demoted primary turns into one
        when a sentinel next looks at it, seconds after the failover)."""
        return str(self._info(node)["role"])

    def _sentinels_settled(self) -> bool:
        wanted = {"num-slaves": len(self.nodes) - 1, "num-other-sentinels": len(self.sentinels) - 1}
        for sentinel in self.sentinels:
            with self._client(sentinel) as client:
                state = client.sentinel_master(self.master_name)
            if any(int(state[field]) != count for field, count in wanted.items()):
                return False
        return True

    def _ask_sentinels(self, *command: str) -> Any:
        """The first running sentinel's answer."""
        for sentinel in self.sentinels:
            if sentinel.running:
                with self._client(sentinel) as client:
                    return client.execute_command(*command)
        raise RedisStartError("no sentinel is running")

    def _client(self, process: EmbeddedRedis) -> redis.Redis:
        password = self.sentinel_password if isinstance(process, SentinelProcess) else self.password
        return redis.Redis(host=LOOPBACK, port=process.port, password=password, decode_responses=True,
                           socket_timeout=1)

    def _info(self, node: EmbeddedRedis) -> dict[str, object]:
        with self._client(node) as client:
            return client.info("replication")  # type: ignore[no-any-return]

    def _until(self, condition: Callable[[], bool], what: str, timeout_s: float = SETTLE_TIMEOUT_S) -> None:
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                if condition():
                    return
            except redis.RedisError:
                pass  # a process starting, or the one just killed
            if time.monotonic() >= deadline:
                raise RedisStartError(f"timed out after {timeout_s:g} s waiting for {what} in {self._dir}")
            time.sleep(POLL_S)


def _quoted(value: str) -> str:
    """A config-file string: double quotes, with backslashes and quotes escaped."""
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def main() -> None:
    """Runs a deployment until Ctrl+C, printing the settings that reach it."""
    with EmbeddedSentinel(data_dir=Path(sys.argv[1]) if len(sys.argv) > 1 else None) as deployment:
        print(f"REDIS_SENTINELS={deployment.addresses}\nREDIS_SENTINEL_MASTER={deployment.master_name}\n"
              f"# primary on port {deployment.nodes[0].port}, replica(s) on "
              f"{', '.join(str(n.port) for n in deployment.nodes[1:])}; Ctrl+C stops them all", flush=True)
        signal.signal(signal.SIGTERM, signal.default_int_handler)
        try:
            signal.pause()
        except KeyboardInterrupt:
            pass


if __name__ == "__main__":
    main()
