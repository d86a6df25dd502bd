"""`duisgw serve --workers 2`: two processes on one port, one view of replay counters."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
from pathlib import Path

import httpx
import trio

from bench.ports import free_ports
from gateway.devkit.client import sign_request
from tests.harness import next_counter, response_code
from tests.test_durability import write_config

INVENTORY = "duis/samples/requests/8.2_READ_INVENTORY_REQUEST_DUIS.XML"


async def wait_ready(admin_ports: list[int], process: subprocess.Popen[bytes]) -> None:
    async with httpx.AsyncClient() as client:
        with trio.fail_after(30):
            for port in admin_ports:
                while True:
                    assert process.poll() is None
                    try:
                        r = await client.get(f"http://127.0.0.1:{port}/readyz")
                        if r.status_code == 200:
                            break
                    except httpx.TransportError:
                        pass
                    await trio.sleep(0.05)


def worker_ports() -> tuple[int, int]:
    """A free DUIS port and admin port for two workers (admin.port + 1 free and apart).

    admin + 1 is checked by binding it: the suite's parallel tests hold ephemeral ports
    of their own, and a second worker that cannot bind its admin port never gets ready.
    """
    while True:
        duis, admin = free_ports(), free_ports()
        if duis not in (admin, admin + 1) and _bindable(admin + 1):
            return duis, admin


def _bindable(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def start_workers(config: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "gateway.cli", "serve", "--config", str(config), "--workers", "2"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


async def inventory_request(shared: Path, keys: Path, duis: int) -> str:
    """A fresh signed 8.2 Read Inventory to the DUIS port; the response code."""
    signed, path = sign_request((shared / INVENTORY).read_bytes(), [keys], counter=next_counter())
    async with httpx.AsyncClient(timeout=30) as client:
        r = await client.post(
            f"http://127.0.0.1:{duis}{path}",
            content=signed,
            headers={"content-type": "application/xml"},
        )
    return response_code(r.content)


async def test_two_workers_share_the_port_and_the_replay_counters(
    tmp_path: Path, shared_dir: Path
) -> None:
    duis, admin = worker_ports()
    process = start_workers(write_config(tmp_path, duis, admin, receiver=9, latency=0.001))
    try:
        await wait_ready([admin, admin + 1], process)
        xml = (shared_dir / INVENTORY).read_bytes()
        headers = {"content-type": "application/xml"}
        counter = next_counter()
        signed, path = sign_request(xml, [tmp_path / "pki"], counter=counter)
        codes = []
        # A fresh connection each time: the kernel spreads them over both workers.
        for _ in range(12):
            async with httpx.AsyncClient() as client:
                r = await client.post(
                    f"http://127.0.0.1:{duis}{path}", content=signed, headers=headers
                )
                codes.append(response_code(r.content))
        assert codes[0] == "I0"
        assert codes[1:] == ["E1"] * 11  # the replay is refused whichever worker gets it
        served = 0
        async with httpx.AsyncClient() as client:
            for port in (admin, admin + 1):
                metrics = (await client.get(f"http://127.0.0.1:{port}/metrics")).text
                served += sum(
                    float(line.rsplit(" ", 1)[1])
                    for line in metrics.splitlines()
                    if line.startswith("duisgw_requests_total{")
                )
        assert served == 12
    finally:
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=30) == 0


async def test_sighup_reloads_every_worker_and_the_supervisor_stays(
    tmp_path: Path, shared_dir: Path
) -> None:
    """SIGHUP to the supervisor (what `systemctl reload` sends) used to end it."""
    duis, admin = worker_ports()
    process = start_workers(write_config(tmp_path, duis, admin, receiver=9, latency=0.001))
    try:
        await wait_ready([admin, admin + 1], process)
        process.send_signal(signal.SIGHUP)
        async with httpx.AsyncClient() as client:
            with trio.fail_after(30):
                for port in (admin, admin + 1):
                    while (
                        'duisgw_reloads_total{outcome="ok"} 1.0'
                        not in (await client.get(f"http://127.0.0.1:{port}/metrics")).text
                    ):
                        assert process.poll() is None, "the supervisor died of SIGHUP"
                        await trio.sleep(0.05)
        assert process.poll() is None
        assert await inventory_request(shared_dir, tmp_path / "pki", duis) == "I0"
    finally:
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=30) == 0
