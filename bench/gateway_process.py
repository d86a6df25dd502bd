"""The gateway under load: a real `duisgw serve` subprocess, started, watched, stopped.

Started with its log in the state directory (optionally pinned to cores, or under
cProfile), ready when every worker's /readyz answers, stopped with SIGTERM. While it
runs, its CPU time is read from /proc and its own request-latency histogram from
/metrics.
"""

from __future__ import annotations

import contextlib
import math
import os
import signal
import socket
import subprocess
import sys
import time
import tomllib
import urllib.request
from pathlib import Path

READY_TIMEOUT_SECONDS = 60.0
STOP_TIMEOUT_SECONDS = 30.0  # above the gateway's default drain_timeout_seconds (10)
LOG_TAIL_BYTES = 3000
SERVER_HISTOGRAM = "duisgw_request_seconds"  # gateway/edge/metrics.py: request in -> answer ready


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
        cls, config: Path, *, workers: int, cores: set[int] | None, profile: Path | None
    ) -> GatewayProcess:
        with config.with_name("gateway.log").open("wb") as log:
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
            except OSError:
                pass
            time.sleep(0.05)
        if waiting:
            raise GatewayFailed(f"not ready after {READY_TIMEOUT_SECONDS} s:\n{self.log_tail()}")

    def stop(self) -> int | None:
        """SIGTERM, then the exit status; None (after SIGKILL) if it does not exit."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(STOP_TIMEOUT_SECONDS)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            return None

    def log_tail(self) -> str:
        data = self.log_path.read_bytes() if self.log_path.exists() else b""
        return data[-LOG_TAIL_BYTES:].decode("utf-8", "replace")

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


class EstateProcess:
    """`duisgw estate serve` beside the gateway (`[estate] transport = "network"`), so the
    gateway's CPU figures leave out the simulated devices' work."""

    def __init__(self, process: subprocess.Popen[bytes], port: int, log_path: Path) -> None:
        self.process = process
        self.port = port
        self.log_path = log_path

    @classmethod
    def start(cls, config: Path, port: int, *, cores: set[int] | None) -> EstateProcess:
        log_path = config.with_name("estate.log")
        with log_path.open("wb") as log:
            process = subprocess.Popen(
                [
                    *(sys.executable, "-m", "gateway.cli", "estate", "serve"),
                    *("--listen", f"127.0.0.1:{port}", "--config", str(config)),
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=config.parent,
            )
        if cores is not None:
            with contextlib.suppress(ProcessLookupError):
                os.sched_setaffinity(process.pid, cores)
        estate = cls(process, port, log_path)
        estate.wait_ready()
        return estate

    def wait_ready(self) -> None:
        """Until its port accepts a connection."""
        deadline = time.monotonic() + READY_TIMEOUT_SECONDS
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                tail = self.log_path.read_bytes()[-LOG_TAIL_BYTES:].decode("utf-8", "replace")
                raise GatewayFailed(f"estate exited {self.process.returncode}:\n{tail}")
            with (
                contextlib.suppress(OSError),
                socket.create_connection(("127.0.0.1", self.port), timeout=1),
            ):
                return
            time.sleep(0.05)
        raise GatewayFailed(f"estate not listening after {READY_TIMEOUT_SECONDS} s")

    def stop(self) -> int | None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(STOP_TIMEOUT_SECONDS)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            return None

    def cpu_seconds(self) -> float:
        return _cpu(self.process.pid)
