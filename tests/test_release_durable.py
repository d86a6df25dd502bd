"""A quarantine release is journaled: a crash mid-release resumes at start, one answer.

Release marks the held request `releasing` before it is processed and `released`
once its answer is durable; at start every `releasing` row of this process is
processed again unless its answer was already stored. Tested with a real
`kill -9` while a released synchronous request waits on a slow device, and by
leaving rows `releasing` in the file (as a crash would) around a clean restart.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sqlite3
from pathlib import Path

import httpx
import msgspec
import trio
from lxml import etree

from gateway.core.config import Config
from gateway.devkit.client import sign_request
from tests.harness import next_counter, response_code, running_gateway
from tests.receiver import Receiver, Seen
from tests.test_durability import free_port, start, write_config
from tests.test_lifecycle_e2e import config_with_receiver
from tests.test_quarantine_e2e import wait_for

SYNC = "duis/samples/requests/ECS17b_4.1.1_REQUEST_DUIS.XML"  # CV 2
ASYNC = "duis/samples/requests/ECS17b_4.1.1_SINGLE_SUCCESS_REQUEST_DUIS.XML"  # CV 1
HOLD_EVERY_READ = """
[[rules]]
user_id = "*"
srv = "4.1.1"
window_seconds = 3600
limit = 0
kind = "user_quarantine"
"""
HEADERS = {"content-type": "application/xml"}


def responses(receiver: Receiver) -> list[Seen]:
    """What reached the User apart from AD1 alerts."""
    return [
        seen
        for seen in receiver.accepted
        if etree.fromstring(seen.body).find(".//{*}DCCAlertMessage") is None
    ]


def bearer(state: Path) -> dict[str, str]:
    """The admin token the daemon made in its state directory at first start."""
    return {"authorization": f"Bearer {(state / 'admin.token').read_text().strip()}"}


def holding_config(tmp_path: Path, duis: int, admin: int, receiver: int, latency: float) -> Path:
    (tmp_path / "rules.toml").write_text(HOLD_EVERY_READ)
    path = write_config(tmp_path, duis, admin, receiver, latency)
    text = path.read_text().replace(
        'store = "memory"', 'store = "memory"\nrules_file = "rules.toml"'
    )
    path.write_text(text)
    return path


async def test_kill_9_mid_release_of_a_synchronous_request_resumes_at_start(
    tmp_path: Path, shared_dir: Path
) -> None:
    receiver = Receiver()
    duis, admin = free_port(), free_port()
    admin_url = f"http://127.0.0.1:{admin}"
    async with trio.open_nursery() as nursery:
        port = await nursery.start(receiver.serve)
        # Devices that take a minute: the release is still waiting on one at the kill.
        process = await start(holding_config(tmp_path, duis, admin, port, 60.0), admin)
        try:
            counter = next_counter()
            signed, path = sign_request(
                (shared_dir / SYNC).read_bytes(), [tmp_path / "pki"], counter=counter
            )
            async with httpx.AsyncClient(timeout=120, headers=bearer(tmp_path)) as client:
                held = await client.post(
                    f"http://127.0.0.1:{duis}{path}", content=signed, headers=HEADERS
                )
                assert response_code(held.content) == "I99"  # held: the AD1 follows
                [item] = (await client.get(f"{admin_url}/admin/quarantine")).json()
                ref = item["event_ref"]

                async def release() -> None:
                    with contextlib.suppress(httpx.TransportError):  # killed while it waits
                        await client.post(f"{admin_url}/admin/quarantine/{ref}/release")

                nursery.start_soon(release)
                with trio.fail_after(10):
                    while True:  # marked (releasing, or released before the fix), not answered
                        marked = [
                            q["event_ref"]
                            for state in ("releasing", "released")
                            for q in (
                                await client.get(
                                    f"{admin_url}/admin/quarantine", params={"state": state}
                                )
                            ).json()
                        ]
                        if ref in marked:
                            break
                        await trio.sleep(0.02)
        finally:
            os.kill(process.pid, signal.SIGKILL)
            process.wait()
        await wait_for(receiver, 1)  # the AD1 got out before the kill
        assert responses(receiver) == []

        process = await start(holding_config(tmp_path, duis, admin, port, 0.001), admin)
        try:
            with trio.fail_after(20):
                while not responses(receiver):
                    await trio.sleep(0.02)
            await trio.sleep(0.3)  # nothing more may come
            [answer] = responses(receiver)
            assert answer.message_id == f"{item['request_id']}:response"
            assert response_code(answer.body) == "I0"
            async with httpx.AsyncClient(headers=bearer(tmp_path)) as client:
                shown = (await client.get(f"{admin_url}/admin/quarantine/{ref}")).json()
                assert shown["state"] == "released"
                again = await client.post(f"{admin_url}/admin/quarantine/{ref}/release")
                assert again.status_code == 409 and "already released" in again.text
        finally:
            process.send_signal(signal.SIGTERM)
            assert process.wait(timeout=30) == 0
        nursery.cancel_scope.cancel()


def leave_releasing(config: Config, refs: list[int]) -> None:
    """As a crash between the two steps of a release would leave the rows."""
    with sqlite3.connect(Path(config.state_dir) / "quarantine.sqlite") as db:
        db.executemany(
            "UPDATE quarantine SET state = 'releasing', release_owner = 0, finished_at_us = NULL"
            " WHERE event_ref = ?",
            [(ref,) for ref in refs],
        )


async def test_a_resumed_release_answers_once_whether_or_not_it_was_answered_before(
    tmp_path: Path, shared_dir: Path
) -> None:
    receiver = Receiver()
    xml = (shared_dir / ASYNC).read_bytes()
    async with trio.open_nursery() as nursery:
        port = await nursery.start(receiver.serve)
        (tmp_path / "rules.toml").write_text(HOLD_EVERY_READ)
        config = config_with_receiver(tmp_path, port)
        config = msgspec.structs.replace(
            config,
            thresholds=msgspec.structs.replace(
                config.thresholds, rules_file=str(tmp_path / "rules.toml")
            ),
        )
        async with running_gateway(config, [tmp_path / "pki"]) as gw:
            for _ in range(2):
                assert response_code((await gw.send(xml)).content) == "I99"
            await wait_for(receiver, 2)  # two AD1 alerts
            answered, unanswered = [
                q["event_ref"] for q in (await gw.admin.get("/admin/quarantine")).json()
            ]
            done = await gw.admin.post(f"/admin/quarantine/{answered}/release")
            assert done.json()["answered"] == "I99"
            await wait_for(receiver, 3)  # its Service Response
        # Both left mid-release: one after its job was journaled, one before anything.
        leave_releasing(config, [answered, unanswered])
        async with running_gateway(config, [tmp_path / "pki"]) as gw:
            await wait_for(receiver, 4)
            await trio.sleep(0.3)
            ids = [seen.message_id for seen in responses(receiver)]
            assert len(ids) == len(set(ids)) == 2  # one answer each, none twice
            for ref in (answered, unanswered):
                shown = (await gw.admin.get(f"/admin/quarantine/{ref}")).json()
                assert shown["state"] == "released"
        nursery.cancel_scope.cancel()
