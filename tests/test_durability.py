"""kill -9 the daemon with acknowledged work in flight; a restart loses none of it."""

from __future__ import annotations

import datetime as dt
import os
import signal
import subprocess
import sys
from pathlib import Path

import httpx
import trio

from bench.ports import free_ports
from gateway.devkit.client import sign_request
from gateway.devkit.default import ensure_default_state
from tests.harness import next_counter, response_code, set_response_url
from tests.receiver import Receiver

ECS17B = "duis/samples/requests/ECS17b_4.1.1_SINGLE_SUCCESS_REQUEST_DUIS.XML"
SUPPLIER = "90-B3-D5-1F-30-01-00-00"
WAN = ("North", "Central", "South", "4G North", "4G Central", "4G South")
HAN = ("Single Band", "Dual Band")


def write_config(state: Path, duis: int, admin: int, receiver: int, latency: float) -> Path:
    base = ensure_default_state(state, dt.datetime.now(dt.UTC)).read_text()
    users = (state / "users.toml").read_text()
    (state / "users.toml").write_text(
        set_response_url(users, SUPPLIER, f"http://127.0.0.1:{receiver}/duis")
    )
    link = (
        f'distribution = "fixed"\nlatency_median_seconds = {latency}\n'
        f"latency_p99_seconds = {latency}\n"
    )
    text = (
        base.replace("port = 8079", f"port = {duis}").replace("port = 8080", f"port = {admin}")
        + "\n[simulator]\n"
        + "\n".join(f'[simulator.wan_profiles."{w}"]\n{link}' for w in WAN)
        + "\n".join(f'[simulator.han_profiles."{h}"]\n{link}' for h in HAN)
        + "\n[delivery]\nbackoff_base_seconds = 0.05\nbackoff_cap_seconds = 0.2\n"
    )
    path = state / "test.toml"
    path.write_text(text)
    return path


async def start(
    config: Path, admin: int, serve_args: list[str] | None = None
) -> subprocess.Popen[bytes]:
    """`duisgw serve --config CONFIG` (or `serve SERVE_ARGS`), ready when /readyz answers."""
    process = subprocess.Popen(
        [sys.executable, "-m", "gateway.cli", "serve", *(serve_args or ["--config", str(config)])],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    async with httpx.AsyncClient() as client:
        with trio.fail_after(30):
            while True:
                try:
                    if (await client.get(f"http://127.0.0.1:{admin}/readyz")).status_code == 200:
                        return process
                except httpx.TransportError:
                    pass
                assert process.poll() is None, process.stderr.read() if process.stderr else ""
                await trio.sleep(0.05)


async def test_kill_9_loses_no_acknowledged_request(tmp_path: Path, shared_dir: Path) -> None:
    receiver = Receiver()
    xml = (shared_dir / ECS17B).read_bytes()
    duis, admin = free_ports(), free_ports()
    async with trio.open_nursery() as nursery:
        port = await nursery.start(receiver.serve)
        # Devices that take a minute to answer: every job is still in flight at the kill.
        slow = write_config(tmp_path, duis, admin, port, latency=60.0)
        process = await start(slow, admin)
        acknowledged = []
        try:
            async with httpx.AsyncClient() as client:
                for _ in range(20):
                    signed, path = sign_request(xml, [tmp_path / "pki"], counter=next_counter())
                    r = await client.post(
                        f"http://127.0.0.1:{duis}{path}",
                        content=signed,
                        headers={"content-type": "application/xml"},
                    )
                    assert response_code(r.content) == "I99"
                    acknowledged.append(signed)
        finally:
            os.kill(process.pid, signal.SIGKILL)
            process.wait()
        assert receiver.accepted == []

        fast = write_config(tmp_path, duis, admin, port, latency=0.001)
        process = await start(fast, admin)
        try:
            with trio.fail_after(30):
                while len(receiver.accepted) < len(acknowledged):
                    await trio.sleep(0.05)
            await trio.sleep(0.3)
            ids = [s.message_id for s in receiver.accepted]
            assert len(ids) == len(set(ids)) == len(acknowledged)
        finally:
            process.send_signal(signal.SIGTERM)
            assert process.wait(timeout=30) == 0
        nursery.cancel_scope.cancel()


async def test_sigterm_drains_the_request_in_flight(tmp_path: Path, shared_dir: Path) -> None:
    """A synchronous request waiting on a slow device is answered before the daemon exits."""
    duis, admin = free_ports(), free_ports()
    config = write_config(tmp_path, duis, admin, receiver=9, latency=1.0)
    process = await start(config, admin)
    xml = (shared_dir / "duis/samples/requests/ECS17b_4.1.1_REQUEST_DUIS.XML").read_bytes()
    signed, path = sign_request(xml, [tmp_path / "pki"], counter=next_counter())
    answers: list[httpx.Response] = []

    async def ask() -> None:
        async with httpx.AsyncClient(timeout=30) as client:
            answers.append(
                await client.post(
                    f"http://127.0.0.1:{duis}{path}",
                    content=signed,
                    headers={"content-type": "application/xml"},
                )
            )

    try:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(ask)
            await trio.sleep(0.5)  # the device takes 2 s (WAN + HAN at 1 s each)
            process.send_signal(signal.SIGTERM)
        assert len(answers) == 1 and response_code(answers[0].content) == "I0"
        assert process.wait(timeout=30) == 0
    finally:
        if process.poll() is None:
            process.kill()
