"""A private redis-server: its own port, its own directory, AOF on, killable.

Tests that kill Redis, or check what survives its restart, must not touch the machine's
shared server; they start one of these (the `redis_server` fixture in tests/conftest.py),
and so does `python -m bench.nodes`.
"""

from __future__ import annotations

import random
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

from bench.ports import free_ports

REDIS_SERVER = shutil.which("redis-server")
START_TIMEOUT_SECONDS = 10.0


class RedisProcess:
    """`redis-server` with appendonly yes and appendfsync always in `directory`."""

    def __init__(
        self, directory: Path, port: int | None = None, *, extra: tuple[str, ...] = ()
    ) -> None:
        if REDIS_SERVER is None:
            raise RuntimeError("redis-server is not installed")
        self.directory = directory
        self.port = port or free_ports()
        self.extra = extra
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> None:
        assert REDIS_SERVER is not None
        self.directory.mkdir(parents=True, exist_ok=True)
        self.process = subprocess.Popen(
            [
                REDIS_SERVER,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--dir",
                str(self.directory),
                "--appendonly",
                "yes",
                "--appendfsync",
                "always",
                "--save",
                "",
                "--logfile",
                str(self.directory / "redis.log"),
                *self.extra,
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + START_TIMEOUT_SECONDS
        while not self._answers():
            if self.process.poll() is not None:
                log = (self.directory / "redis.log").read_text(errors="replace")[-2000:]
                raise RuntimeError(f"redis-server exited with {self.process.returncode}: {log}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"redis-server did not answer on {self.port}")
            time.sleep(0.05)

    def kill9(self) -> None:
        """SIGKILL, no shutdown save: only what the AOF already holds survives."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait()

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=2)  # it refuses while writing its first AOF
            except subprocess.TimeoutExpired:
                self.kill9()

    def _answers(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as sock:
                sock.sendall(b"PING\r\n")
                return sock.recv(16).startswith(b"+PONG")
        except OSError:
            return False


REDIS_CLI = shutil.which("redis-cli")
CLUSTER_CREATE_TIMEOUT_SECONDS = 30.0
CLUSTER_READY_TIMEOUT_SECONDS = 15.0


CLUSTER_BUS_OFFSET = 10_000  # Redis's cluster bus listens on port + 10000


def cluster_port() -> int:
    """A port free now whose cluster bus port (port + 10000) is free and valid too."""
    while True:
        port = random.randint(20_000, 65_535 - CLUSTER_BUS_OFFSET)
        try:
            for candidate in (port, port + CLUSTER_BUS_OFFSET):
                with socket.socket() as sock:
                    sock.bind(("127.0.0.1", candidate))
        except OSError:
            continue
        return port


class RedisClusterProcesses:
    """Three test-owned `redis-server --cluster-enabled yes` primaries (AOF on, fsync
    always), joined with `redis-cli --cluster create`: every slot served, no replicas."""

    def __init__(self, directory: Path, size: int = 3) -> None:
        self.servers = [
            RedisProcess(
                directory / f"cluster-{i}",
                cluster_port(),
                extra=("--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf"),
            )
            for i in range(size)
        ]

    @property
    def addresses(self) -> list[str]:
        return [server.address for server in self.servers]

    def start(self) -> None:
        if REDIS_CLI is None:
            raise RuntimeError("redis-cli is not installed")
        for server in self.servers:
            server.start()
        created = subprocess.run(
            [REDIS_CLI, "--cluster", "create", *self.addresses, "--cluster-yes"],
            capture_output=True,
            text=True,
            timeout=CLUSTER_CREATE_TIMEOUT_SECONDS,
            check=False,
        )
        if created.returncode != 0:
            raise RuntimeError(f"redis-cli --cluster create failed: {created.stdout[-2000:]}")
        deadline = time.monotonic() + CLUSTER_READY_TIMEOUT_SECONDS
        while not all(self._state_ok(server) for server in self.servers):
            if time.monotonic() > deadline:
                raise RuntimeError("the cluster did not reach cluster_state:ok")
            time.sleep(0.1)

    def stop(self) -> None:
        for server in self.servers:
            server.stop()

    @staticmethod
    def _state_ok(server: RedisProcess) -> bool:
        assert REDIS_CLI is not None
        info = subprocess.run(
            [REDIS_CLI, "-p", str(server.port), "cluster", "info"],
            capture_output=True,
            text=True,
            timeout=5,
            check=False,
        ).stdout
        return "cluster_state:ok" in info


SENTINEL_FAILOVER_TIMEOUT_SECONDS = 30.0


class RedisSentinelProcesses:
    """A test-owned primary, one replica of it and one Sentinel watching them under
    `service_name` (quorum 1, the primary judged down after one second): enough for a
    real failover, as a Sentinel deployment of the shared state does it."""

    def __init__(self, directory: Path, service_name: str = "duisgw") -> None:
        self.directory = directory
        self.service_name = service_name
        self.primary = RedisProcess(directory / "primary")
        self.replica = RedisProcess(
            directory / "replica", extra=("--replicaof", "127.0.0.1", str(self.primary.port))
        )
        self.sentinel_port = free_ports()
        self.sentinel: subprocess.Popen[bytes] | None = None

    @property
    def sentinel_address(self) -> str:
        return f"127.0.0.1:{self.sentinel_port}"

    def start(self) -> None:
        assert REDIS_SERVER is not None
        self.primary.start()
        self.replica.start()
        here = self.directory / "sentinel"
        here.mkdir(parents=True, exist_ok=True)
        conf = here / "sentinel.conf"  # Sentinel rewrites it as it learns
        conf.write_text(
            f"port {self.sentinel_port}\nbind 127.0.0.1\ndir {here}\n"
            f"logfile {here / 'sentinel.log'}\n"
            f"sentinel monitor {self.service_name} 127.0.0.1 {self.primary.port} 1\n"
            f"sentinel down-after-milliseconds {self.service_name} 1000\n"
            f"sentinel failover-timeout {self.service_name} 3000\n"
        )
        self.sentinel = subprocess.Popen(
            [REDIS_SERVER, str(conf), "--sentinel"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + START_TIMEOUT_SECONDS
        while (
            self.primary_port() != self.primary.port
            or not self._replica_known()
            or not self._replica_in_sync()
        ):
            if self.sentinel.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("the Sentinel did not come up watching the primary")
            time.sleep(0.1)

    def primary_port(self) -> int | None:
        """The port Sentinel names as the primary now (None if it cannot be asked)."""
        answer = self._ask(f"SENTINEL get-master-addr-by-name {self.service_name}")
        lines = [line for line in answer.split("\r\n") if line and line[0] not in "*$"]
        return int(lines[1]) if len(lines) == 2 and lines[1].isdigit() else None

    def wait_for_failover(self) -> None:
        """Until Sentinel names the replica as the primary."""
        deadline = time.monotonic() + SENTINEL_FAILOVER_TIMEOUT_SECONDS
        while self.primary_port() != self.replica.port:
            if time.monotonic() > deadline:
                raise RuntimeError("Sentinel did not promote the replica in time")
            time.sleep(0.2)

    def stop(self) -> None:
        if self.sentinel is not None and self.sentinel.poll() is None:
            self.sentinel.kill()
            self.sentinel.wait()
        self.replica.stop()
        self.primary.stop()

    def _replica_known(self) -> bool:
        return "slave" in self._ask(f"SENTINEL replicas {self.service_name}")

    def _replica_in_sync(self) -> bool:
        """The replica has its initial copy (a WAIT before that counts no replica)."""
        return "master_link_status:up" in self._ask("INFO replication", self.replica.port)

    def _ask(self, command: str, port: int | None = None) -> str:
        words = command.split()
        wire = f"*{len(words)}\r\n" + "".join(f"${len(w)}\r\n{w}\r\n" for w in words)
        try:
            address = ("127.0.0.1", port or self.sentinel_port)
            with socket.create_connection(address, timeout=1) as sock:
                sock.sendall(wire.encode())
                time.sleep(0.05)
                return sock.recv(65536).decode(errors="replace")
        except OSError:
            return ""
