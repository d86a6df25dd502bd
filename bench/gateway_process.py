"""The gateway under load: a real `duisgw serve` subprocess, started, watched, stopped.

Started with its log in the state directory (optionally pinned to cores, or under
cProfile), ready when every worker's /readyz answers, stopped with SIGTERM (or killed
with SIGKILL, and started again). While it runs, its CPU time is read from /proc and its
own request-latency histogram from /metrics.

Several nodes of one deployment (issue 13): `write_node_configs` gives each node its own
state directory and ports over one estate, one admin token and one `[state]` (Redis);
`GatewayNodes` starts them as separate processes, kill -9s and restarts one.
"""

from __future__ import annotations

import contextlib
import http.client
import math
import os
import signal
import socket
import subprocess
import sys
import time
import tomllib
import urllib.request
from collections.abc import Mapping, Sequence
from pathlib import Path

import msgspec

from bench.corpus import free_ports, toml_text
from bench.receiver import Stats
from gateway.edge.admin_auth import ensure_admin_token

READY_TIMEOUT_SECONDS = 60.0
STOP_TIMEOUT_SECONDS = 30.0  # above the gateway's default drain_timeout_seconds (10)
LOG_TAIL_BYTES = 3000
SERVER_HISTOGRAM = "duisgw_request_seconds"  # gateway/edge/metrics.py: request in -> answer ready
CHECKS_CPU = "duisgw_checks_cpu_seconds"  # the same: CPU in each request's checks
PROJECT_ROOT = Path(__file__).resolve().parent.parent  # `bench` importable from here


class GatewayFailed(Exception):
    """The gateway did not start, or did not stop cleanly; the message holds its log tail."""


def gateway_command(config: Path, workers: int, profile: Path | None) -> list[str]:
    # `python -m gateway.cli` is `duisgw` (same entry point, same interpreter), and
    # it can run under cProfile.
    prefix = [sys.executable] + (["-m", "cProfile", "-o", str(profile)] if profile else [])
    extra = ["--workers", str(workers)] if workers != 1 else []
    return [*prefix, "-m", "gateway.cli", "serve", "--config", str(config), *extra]


def workers_unavailable() -> str | None:
    """None if `duisgw serve` takes --workers, else why not."""
    help_text = subprocess.run(
        [sys.executable, "-m", "gateway.cli", "serve", "--help"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    ).stdout
    return None if "--workers" in help_text else "duisgw serve has no --workers option"


class GatewayProcess:
    def __init__(self, process: subprocess.Popen[bytes], config: Path, workers: int) -> None:
        self.process = process
        self.config_path = config
        values = tomllib.loads(config.read_text())
        self.duis_port: int = values["listen"]["port"]
        # gateway/edge/workers.py: worker i's admin listener is on admin.port + i.
        self.admin_ports = [values["admin"]["port"] + i for i in range(workers)]
        self.log_path = config.with_name("gateway.log")

    @classmethod
    def start(
        cls,
        config: Path,
        *,
        workers: int,
        cores: set[int] | None,
        profile: Path | None,
        append_log: bool = False,
    ) -> GatewayProcess:
        with config.with_name("gateway.log").open("ab" if append_log else "wb") as log:
            process = subprocess.Popen(
                gateway_command(config, workers, profile),
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=config.parent,
            )
        if cores is not None:
            # Before the interpreter has started any thread: every later one inherits it.
            with contextlib.suppress(ProcessLookupError):  # wait_ready reports an early exit
                os.sched_setaffinity(process.pid, cores)
        return cls(process, config, workers)

    def wait_ready(self) -> None:
        """Until every worker's /readyz answers 200."""
        waiting = list(self.admin_ports)
        deadline = time.monotonic() + READY_TIMEOUT_SECONDS
        while waiting and time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise GatewayFailed(
                    f"gateway exited {self.process.returncode} before it was "
                    f"ready:\n{self.log_tail()}"
                )
            try:
                url = f"http://127.0.0.1:{waiting[0]}/readyz"
                with urllib.request.urlopen(url, timeout=1) as answer:
                    if answer.status == 200:
                        waiting.pop(0)
                        continue
            except (OSError, http.client.HTTPException):
                pass  # not listening yet, or not answering HTTP yet (bench/ports.py)
            time.sleep(0.05)
        if waiting:
            raise GatewayFailed(f"not ready after {READY_TIMEOUT_SECONDS} s:\n{self.log_tail()}")

    def kill9(self) -> int:
        """SIGKILL (no drain, no shutdown path), then the exit status."""
        if self.process.poll() is None:
            self.process.kill()
        return self.process.wait()

    def restart(self) -> None:
        """A new process on the same config (ports, state directory), after it exited."""
        assert self.process.poll() is not None, "restart() needs a stopped process"
        started = GatewayProcess.start(
            self.config_path,
            workers=len(self.admin_ports),
            cores=None,
            profile=None,
            append_log=True,  # the killed run's log stays above the new one
        )
        self.process = started.process

    def stop(self) -> int | None:
        """SIGTERM, then the exit status; None (after SIGKILL) if it does not exit."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        return self.wait_exit()

    def wait_exit(self) -> int | None:
        """The exit status; None (after SIGKILL) if it has not exited in time."""
        try:
            return self.process.wait(STOP_TIMEOUT_SECONDS)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            return None

    def log_tail(self) -> str:
        return _log_tail(self.log_path)

    def latency_buckets(self) -> dict[float, float]:
        """The gateway's own request-latency histogram (cumulative counts by upper bound),
        summed over endpoints and workers: what the server timed."""
        text = ""
        for port in self.admin_ports:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as answer:
                text += answer.read().decode()
        buckets: dict[float, float] = {}
        for line in text.splitlines():
            if line.startswith(SERVER_HISTOGRAM + "_bucket{"):
                labels, value = line.rsplit(" ", 1)
                bound = labels.split('le="', 1)[1].split('"', 1)[0]
                key = math.inf if bound == "+Inf" else float(bound)
                buckets[key] = buckets.get(key, 0.0) + float(value)
        return buckets

    def checks_cpu(self) -> tuple[float, float]:
        """(CPU seconds, requests) the gateway's serving threads spent in the request
        checks so far, summed over workers (gateway/edge/metrics.py `checks_cpu`)."""
        found = self.counters((CHECKS_CPU + "_sum", CHECKS_CPU + "_count"))
        return found.get(CHECKS_CPU + "_sum", 0.0), found.get(CHECKS_CPU + "_count", 0.0)

    def rss_mb(self) -> float:
        """The gateway's resident memory (its first process), from /proc."""
        for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
        return 0.0

    def counters(self, prefixes: tuple[str, ...]) -> dict[str, float]:
        """Non-zero samples of the named metrics (with their labels), from /metrics."""
        found: dict[str, float] = {}
        for port in self.admin_ports:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as answer:
                text = answer.read().decode()
            for line in text.splitlines():
                if line.startswith(prefixes):
                    name, value = line.rsplit(" ", 1)
                    if float(value):
                        found[name] = found.get(name, 0.0) + float(value)
        return found

    def cpu_seconds(self) -> float:
        """User + system CPU of the gateway and its worker processes, from /proc."""
        pids = {self.process.pid}
        pids |= _descendants(pids)
        return sum(_cpu(pid) for pid in pids)


def _stat_fields(pid: int) -> list[str]:
    text = Path(f"/proc/{pid}/stat").read_text()
    return text[text.rindex(")") + 2 :].split()  # field 3 (state) is index 0


def _cpu(pid: int) -> float:
    try:
        fields = _stat_fields(pid)
    except (OSError, ValueError):
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _descendants(roots: set[int]) -> set[int]:
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                parents[int(entry.name)] = int(_stat_fields(int(entry.name))[1])
            except (OSError, ValueError, IndexError):
                continue
    found: set[int] = set()
    frontier = set(roots)
    while frontier:
        frontier = {pid for pid, parent in parents.items() if parent in frontier} - found
        found |= frontier
    return found


# ------------------------------------------------------------------ several nodes

NODE_CONFIG_NAME = "duisgw.toml"
SHARED_TOKEN_NAME = "admin.token"


def write_node_configs(
    default_config: Path,
    count: int,
    *,
    state: Mapping[str, object],
    overrides: Mapping[str, Mapping[str, object]] | None = None,
    workers: int = 1,
) -> list[Path]:
    """node-<i>/duisgw.toml beside `default_config` (as written by `ensure_default_state`)
    for `count` nodes of one deployment: each its own state directory and free ports; the
    estate (PKI, users, inventory) and one admin token shared; `[state]` as given (e.g.
    `{"backend": "redis", "redis": {"url": ..., "key_prefix": ...}}`). `overrides`
    replaces or adds keys per table (`{"thresholds": {"rules_file": ...}}`).
    """
    base = default_config.parent.resolve()
    values = tomllib.loads(default_config.read_text())
    trust = values["trust"]
    trust["certificate_dirs"] = [str(base / d) for d in trust["certificate_dirs"]]
    for key in ("dcc_signing_certificate", "dcc_signing_key"):
        trust[key] = str(base / trust[key])
    registry = values["registry"]
    for key in ("users_file", "inventory_file"):
        registry[key] = str(base / registry[key])
    # The default pins the in-memory threshold store; a deployment follows [state].
    values.get("thresholds", {}).pop("store", None)
    token = base / SHARED_TOKEN_NAME
    ensure_admin_token(token)  # before any node starts: none of them races to create it
    values["admin"]["token_file"] = str(token)
    values["state"] = dict(state)
    for table, keys in (overrides or {}).items():
        values.setdefault(table, {}).update(keys)
    configs = []
    taken: set[int] = set()
    for index in range(1, count + 1):
        node = base / f"node-{index}"
        node.mkdir(exist_ok=True)
        admin, duis = _distinct_ports(workers, taken)
        values["state_dir"] = str(node)
        values["admin"]["port"], values["listen"]["port"] = admin, duis
        path = node / NODE_CONFIG_NAME
        path.write_text(toml_text(values))
        configs.append(path)
    return configs


def _distinct_ports(workers: int, taken: set[int]) -> tuple[int, int]:
    """An admin range (one per worker) and a DUIS port, apart from each other and from
    the ports already given to other nodes (free-port probes may repeat one)."""
    while True:
        admin, duis = free_ports(workers), free_ports(1)
        wanted = {*range(admin, admin + workers), duis}
        if len(wanted) == workers + 1 and not wanted & taken:
            taken |= wanted
            return admin, duis


class GatewayNodes:
    """Separate `duisgw serve` processes, one per config, started together."""

    def __init__(self, nodes: Sequence[GatewayProcess]) -> None:
        self.nodes = list(nodes)

    @classmethod
    def start(cls, configs: Sequence[Path], *, workers: int = 1) -> GatewayNodes:
        """Every node started, then waited for; if one fails, all are stopped."""
        nodes = cls(
            [GatewayProcess.start(c, workers=workers, cores=None, profile=None) for c in configs]
        )
        try:
            for node in nodes.nodes:
                node.wait_ready()
        except BaseException:
            nodes.stop()
            raise
        return nodes

    def duis_url(self, index: int) -> str:
        return f"http://127.0.0.1:{self.nodes[index].duis_port}"

    def admin_url(self, index: int) -> str:
        return f"http://127.0.0.1:{self.nodes[index].admin_ports[0]}"

    @property
    def duis_urls(self) -> list[str]:
        return [self.duis_url(i) for i in range(len(self.nodes))]

    @property
    def admin_token(self) -> str:
        config = tomllib.loads(self.nodes[0].config_path.read_text())
        return Path(config["admin"]["token_file"]).read_text().strip()

    def kill9(self, index: int) -> int:
        return self.nodes[index].kill9()

    def restart(self, index: int) -> None:
        """Start node `index` again (after kill9 or stop) and wait until it is ready."""
        self.nodes[index].restart()
        self.nodes[index].wait_ready()

    def stop(self) -> list[int | None]:
        """SIGTERM to every node at once (one each: a second one would end a node's
        drain), then each one's exit status; None (after SIGKILL) if it does not exit."""
        for node in self.nodes:
            if node.process.poll() is None:
                node.process.send_signal(signal.SIGTERM)
        return [node.wait_exit() for node in self.nodes]

    def log_tails(self) -> str:
        return "\n".join(
            f"--- node {i + 1}:\n{node.log_tail()}" for i, node in enumerate(self.nodes)
        )


class SideProcess:
    """A server the bench starts beside the gateway, on its own port, pinned as asked:
    its CPU, its log, its stop."""

    name = "side process"

    def __init__(self, process: subprocess.Popen[bytes], port: int, log_path: Path) -> None:
        self.process = process
        self.port = port
        self.log_path = log_path

    @staticmethod
    def _spawn(
        command: list[str], log_path: Path, cwd: Path, cores: set[int] | None
    ) -> subprocess.Popen[bytes]:
        with log_path.open("wb") as log:
            process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, cwd=cwd)
        if cores is not None:
            with contextlib.suppress(ProcessLookupError):
                os.sched_setaffinity(process.pid, cores)
        return process

    def wait_ready(self) -> None:
        """Until its port accepts a connection."""
        _wait_listening(self.process, self.port, self.log_path, self.name)

    def stop(self) -> int | None:
        return _terminate(self.process)

    def cpu_seconds(self) -> float:
        return _cpu(self.process.pid)

    def log_tail(self) -> str:
        return _log_tail(self.log_path)


class EstateProcess(SideProcess):
    """`duisgw estate serve` beside the gateway (`[estate] transport = "network"`), so the
    gateway's CPU figures leave out the simulated devices' work."""

    name = "estate"

    @classmethod
    def start(cls, config: Path, port: int, *, cores: set[int] | None) -> EstateProcess:
        log_path = config.with_name("estate.log")
        command = [
            *(sys.executable, "-m", "gateway.cli", "estate", "serve"),
            *("--listen", f"127.0.0.1:{port}", "--config", str(config)),
        ]
        estate = cls(cls._spawn(command, log_path, config.parent, cores), port, log_path)
        estate.wait_ready()
        return estate


class ReceiverProcess(SideProcess):
    """`python -m bench.receiver` beside the gateway: the Users' Receive Response endpoint
    out of the gateway's process, so delivery's far side is not in the gateway's CPU."""

    name = "receiver"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/receive"

    @classmethod
    def start(cls, directory: Path, port: int, *, cores: set[int] | None) -> ReceiverProcess:
        log_path = directory / "receiver.log"
        command = [sys.executable, "-m", "bench.receiver", "--port", str(port)]
        receiver = cls(cls._spawn(command, log_path, PROJECT_ROOT, cores), port, log_path)
        receiver.wait_ready()
        return receiver

    def stats(self) -> Stats:
        """Its counts so far (`GET /stats`); GatewayFailed with its log if it cannot answer."""
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/stats", timeout=5) as got:
                return msgspec.json.decode(got.read(), type=Stats)
        except OSError as exc:
            raise GatewayFailed(
                f"bench.receiver did not answer /stats ({exc}):\n{self.log_tail()}"
            ) from exc


class StackFloorProcess(SideProcess):
    """`python -m bench.stack_floor_server` in one of its modes (bench/stack_floor.py)."""

    name = "stack floor server"

    @classmethod
    def start(
        cls, directory: Path, port: int, mode: str, answer: Path, *, cores: set[int] | None
    ) -> StackFloorProcess:
        log_path = directory / f"stack-floor-{mode}.log"
        command = [sys.executable, "-m", "bench.stack_floor_server", "--port", str(port)]
        command += ["--mode", mode, "--answer", str(answer), "--state-dir", str(directory)]
        server = cls(cls._spawn(command, log_path, PROJECT_ROOT, cores), port, log_path)
        server.wait_ready()
        return server


def _log_tail(path: Path) -> str:
    data = path.read_bytes() if path.exists() else b""
    return data[-LOG_TAIL_BYTES:].decode("utf-8", "replace")


def _wait_listening(process: subprocess.Popen[bytes], port: int, log_path: Path, name: str) -> None:
    """Until `port` accepts a connection; GatewayFailed with the log tail if `process` exits."""
    deadline = time.monotonic() + READY_TIMEOUT_SECONDS
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise GatewayFailed(f"{name} exited {process.returncode}:\n{_log_tail(log_path)}")
        with (
            contextlib.suppress(OSError),
            socket.create_connection(("127.0.0.1", port), timeout=1),
        ):
            return
        time.sleep(0.05)
    raise GatewayFailed(f"{name} not listening after {READY_TIMEOUT_SECONDS} s")


def _terminate(process: subprocess.Popen[bytes]) -> int | None:
    """SIGTERM, then the exit status; None (after SIGKILL) if it does not exit in time."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
    try:
        return process.wait(STOP_TIMEOUT_SECONDS)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
        return None
