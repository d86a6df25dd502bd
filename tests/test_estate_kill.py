"""kill -9 of the estate process under load, then a restart: the gateway reconnects and
every acknowledged request gets exactly one final Service Response."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections import Counter
from pathlib import Path

import httpx
import trio

from bench.ports import free_ports
from gateway.devkit.client import sign_request
from tests.harness import next_counter, response_code
from tests.receiver import Receiver
from tests.test_durability import ECS17B, start, write_config


def with_estate_link(config: Path, estate_port: int) -> None:
    config.write_text(
        config.read_text()
        + "\n[estate]\n"
        + 'transport = "network"\n'
        + f'address = "127.0.0.1:{estate_port}"\n'
        + 'node_id = "kill-test-node"\n'
        + "command_timeout_seconds = 10.0\n"  # above the 10 x 0.6 s a hub needs after the restart
        + "heartbeat_seconds = 0.5\n"
        + "reconnect_initial_seconds = 0.05\n"
        + "reconnect_max_seconds = 0.3\n"
    )


async def start_estate(config: Path, port: int) -> subprocess.Popen[bytes]:
    """`duisgw estate serve`, ready when its port accepts a connection."""
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "gateway.cli",
            "estate",
            "serve",
            "--listen",
            f"127.0.0.1:{port}",
            "--config",
            str(config),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    with trio.fail_after(30):
        while True:
            try:
                stream = await trio.open_tcp_stream("127.0.0.1", port)
            except OSError:
                assert process.poll() is None, process.stderr.read() if process.stderr else ""
                await trio.sleep(0.05)
                continue
            await stream.aclose()
            return process


async def test_kill_9_of_the_estate_loses_no_acknowledged_request(
    tmp_path: Path, shared_dir: Path
) -> None:
    receiver = Receiver()
    xml = (shared_dir / ECS17B).read_bytes()
    duis, admin, estate_port = free_ports(), free_ports(), free_ports()
    processes: list[subprocess.Popen[bytes]] = []
    async with trio.open_nursery() as nursery:
        port = await nursery.start(receiver.serve)
        # Each command takes 0.6 s (WAN + HAN) and a hub serves one at a time: at the kill
        # most of them are queued inside the estate.
        config = write_config(tmp_path, duis, admin, port, latency=0.3)
        with_estate_link(config, estate_port)
        try:
            estate = await start_estate(config, estate_port)
            processes.append(estate)
            processes.append(await start(config, admin))
            acknowledged: list[str] = []

            async def send(client: httpx.AsyncClient, count: int) -> None:
                for _ in range(count):
                    counter = next_counter()
                    signed, path = sign_request(xml, [tmp_path / "pki"], counter=counter)
                    r = await client.post(
                        f"http://127.0.0.1:{duis}{path}",
                        content=signed,
                        headers={"content-type": "application/xml"},
                    )
                    assert response_code(r.content) == "I99"
                    acknowledged.append(f":{counter}:response")

            async with httpx.AsyncClient(timeout=30) as client:
                await send(client, 30)
                with trio.fail_after(30):
                    while len(receiver.accepted) < 2:
                        await trio.sleep(0.02)
                os.kill(estate.pid, signal.SIGKILL)
                estate.wait()
                answered_before_kill = len(receiver.accepted)
                assert answered_before_kill < 30  # the kill hit work in flight
                await send(client, 5)  # accepted while the estate is down
                processes.append(await start_estate(config, estate_port))
                await send(client, 5)  # and after it is back
            with trio.fail_after(60):
                while len(receiver.accepted) < len(acknowledged):
                    await trio.sleep(0.05)
            await trio.sleep(1.0)  # nothing more arrives
            ids = [seen.message_id for seen in receiver.accepted]
            assert len(ids) == len(set(ids)) == len(acknowledged)
            assert sorted(i[i.rindex(":", 0, -9) :] for i in ids) == sorted(acknowledged)
            codes = Counter(response_code(seen.body) for seen in receiver.accepted)
            assert set(codes) <= {"I0", "E21"}
            assert codes["E21"] >= 1  # those lost with the estate, answered at their timeout
            # Every request accepted after the kill was answered by the new estate process.
            after_kill = set(acknowledged[30:])
            late = [
                s
                for s in receiver.accepted
                if s.message_id[s.message_id.rindex(":", 0, -9) :] in after_kill
            ]
            assert len(late) == 10
            assert {response_code(s.body) for s in late} == {"I0"}
        finally:
            for process in processes:
                if process.poll() is None:
                    process.send_signal(signal.SIGTERM)
                    try:
                        process.wait(timeout=30)
                    except subprocess.TimeoutExpired:
                        process.kill()
        nursery.cancel_scope.cancel()


async def test_sigterm_stops_the_estate_with_a_clean_exit(tmp_path: Path) -> None:
    """A service manager's stop (SIGTERM) ends `duisgw estate serve` with status 0 and a
    log line, as it does `duisgw serve`, not by the signal's default (a crash to it)."""
    duis, admin, estate_port = free_ports(), free_ports(), free_ports()
    config = write_config(tmp_path, duis, admin, free_ports(), latency=0.1)
    with_estate_link(config, estate_port)
    estate = await start_estate(config, estate_port)
    try:
        estate.send_signal(signal.SIGTERM)
        status = await trio.to_thread.run_sync(lambda: estate.wait(timeout=30))
    finally:
        if estate.poll() is None:
            estate.kill()
    assert status == 0
    assert estate.stderr is not None
    assert b"estate stopped" in estate.stderr.read()
