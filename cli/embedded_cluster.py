"""A private Redis Cluster on loopback: N masters (and R replicas each), every node an
``EmbeddedRedis`` child with ``cluster-enabled``, joined and given slots with CLUSTER
commands (no ``redis-cli`` needed).

Used by the test suite (``TEST_REDIS=cluster`` and the failover tests) and by
``benchmarks/scale.py``.
"""

from __future__ import annotations

import socket
import tempfile
import time
from pathlib import Path
from types import TracebackType

import redis

from cli.embedded_redis import LOOPBACK, EmbeddedRedis, RedisStartError, free_port

SLOTS = 16384
BUS_PORT_OFFSET = 10000  # a node also listens on its port + 10000 for the cluster bus
FORM_TIMEOUT_S = 30.0
POLL_S = 0.05


class EmbeddedCluster:
    """``masters`` masters with ``replicas`` replicas each, slots split evenly."""

    def __init__(self, masters: int = 3, replicas: int = 0, *, data_dir: Path | None = None,
                 node_timeout_ms: int = 2000, appendonly: bool = False) -> None:
        if masters < 1 or replicas < 0:
            raise ValueError("a cluster needs at least one master and no negative replica count")
        self._dir = Path(data_dir) if data_dir is not None else Path(tempfile.mkdtemp(prefix="tgjobs-cluster-"))
        args = ("--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf",
                "--cluster-node-timeout", str(node_timeout_ms),
                # A replica without a recent sync may still be promoted: failover tests kill
                # masters moments after writing.
                "--cluster-replica-validity-factor", "0")
        self.nodes = [EmbeddedRedis(self._dir / f"node-{i}", port=_cluster_port(), appendonly=appendonly,
                                    extra_args=args)
                      for i in range(masters * (1 + replicas))]
        self._masters = masters

    @property
    def url(self) -> str:
        """A URL naming one node (the first master); the client discovers the rest."""
        return self.nodes[0].url

    @property
    def masters(self) -> list[EmbeddedRedis]:
        return self.nodes[:self._masters]

    @property
    def replicas(self) -> list[EmbeddedRedis]:
        return self.nodes[self._masters:]

    def __enter__(self) -> EmbeddedCluster:
        self.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()

    def start(self) -> None:
        try:
            for node in self.nodes:
                node.start()
            self._form()
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()

    def node_for_port(self, port: int) -> EmbeddedRedis:
        return next(node for node in self.nodes if node.port == port)

    def master_of(self, key: str) -> EmbeddedRedis:
        """The node serving `key`'s slot now (after a failover, a former replica)."""
        with redis.Redis(host=LOOPBACK, port=self._live_node().port) as client:
            slot = client.cluster("KEYSLOT", key)
            for start, end, master, *_ in client.cluster("SLOTS"):
                if start <= slot <= end:
                    return self.node_for_port(int(master[1]))
        raise RedisStartError(f"no node serves slot {slot}")

    def wait_ok(self, timeout_s: float = FORM_TIMEOUT_S) -> None:
        """Until every running node reports cluster_state:ok, and every running replica
        has synced with its master (so WAIT counts it)."""
        deadline = time.monotonic() + timeout_s
        while True:
            if all(_ready(node) for node in self.nodes if node.running):
                return
            if time.monotonic() >= deadline:
                raise RedisStartError(f"the cluster in {self._dir} did not reach cluster_state:ok "
                                      f"within {timeout_s:g} s")
            time.sleep(POLL_S)

    def _form(self) -> None:
        clients = [redis.Redis(host=LOOPBACK, port=node.port, decode_responses=True) for node in self.nodes]
        try:
            per_master = SLOTS // self._masters
            for i, client in enumerate(clients[:self._masters]):
                last = SLOTS - 1 if i == self._masters - 1 else (i + 1) * per_master - 1
                client.execute_command("CLUSTER", "ADDSLOTSRANGE", i * per_master, last)
            for client in clients[1:]:
                client.execute_command("CLUSTER", "MEET", LOOPBACK, self.nodes[0].port)
            ids = [client.execute_command("CLUSTER", "MYID") for client in clients]
            self._until(lambda: all(len(_known(c)) == len(clients) for c in clients), "the nodes to meet")
            for i, client in enumerate(clients[self._masters:]):
                master_id = ids[i % self._masters]
                self._until(lambda c=client, m=master_id: m in _known(c), "a replica to learn its master")
                client.execute_command("CLUSTER", "REPLICATE", master_id)
        finally:
            for client in clients:
                client.close()
        self.wait_ok()

    def _until(self, condition: object, what: str) -> None:
        deadline = time.monotonic() + FORM_TIMEOUT_S
        while not condition():  # type: ignore[operator]
            if time.monotonic() >= deadline:
                raise RedisStartError(f"timed out waiting for {what} in {self._dir}")
            time.sleep(POLL_S)

    def _live_node(self) -> EmbeddedRedis:
        return next(node for node in self.nodes if node.running)


def _ready(node: EmbeddedRedis) -> bool:
    with redis.Redis(host=LOOPBACK, port=node.port, socket_timeout=1, decode_responses=True) as client:
        try:
            replication = client.info("replication")
            return (client.cluster("INFO")["cluster_state"] == "ok"
                    and (replication["role"] == "master" or replication.get("master_link_status") == "up"))
        except redis.RedisError:
            return False


def _cluster_port() -> int:
    """A free port whose bus port (+10000) is a port too, and free."""
    while True:
        port = free_port()
        if port + BUS_PORT_OFFSET <= 65535:
            try:
                with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
                    sock.bind((LOOPBACK, port + BUS_PORT_OFFSET))
                return port
            except OSError:
                pass


def _known(client: redis.Redis) -> set[str]:
    """Node ids this node knows, handshakes done."""
    lines = client.execute_command("CLUSTER", "NODES").splitlines()
    return {line.split()[0] for line in lines if "handshake" not in line and "noaddr" not in line}
