"""A quarantine release is journaled: a crash mid-release resumes at start, one answer.

Release marks the held request `releasing` before it is processed and `released`
once its answer is durable; at start every `releasing` row of this process is
processed again unless its answer was already stored. Tested by leaving rows
`releasing` in the file (as a crash would) around a clean restart. (A real `kill -9`
while a released CV 2 waited on a slow device was the other test: CV 2 no longer
reaches a device, so no release waits on one; its release is tested here instead.)
"""

from __future__ import annotations

import base64
import sqlite3
from pathlib import Path

import msgspec
import trio
from lxml import etree

from gateway.core.config import Config
from mmc.identifiers import parse_request_id
from tests.harness import next_counter, response_code, running_gateway
from tests.receiver import Receiver, Seen
from tests.test_lifecycle_e2e import config_with_receiver
from tests.test_local_delivery_e2e import device_answer, return_request
from tests.test_quarantine_e2e import wait_for

SYNC = "duis/samples/requests/ECS17b_4.1.1_REQUEST_DUIS.XML"  # CV 2: local delivery
ASYNC = "duis/samples/requests/ECS17b_4.1.1_SINGLE_SUCCESS_REQUEST_DUIS.XML"  # CV 1
HOLD_EVERY_READ = """
[[rules]]
user_id = "*"
srv = "4.1.1"
window_seconds = 3600
limit = 0
kind = "user_quarantine"
"""


def responses(receiver: Receiver) -> list[Seen]:
    """What reached the User apart from AD1 alerts."""
    return [
        seen
        for seen in receiver.accepted
        if etree.fromstring(seen.body).find(".//{*}DCCAlertMessage") is None
    ]


async def test_a_released_local_command_is_delivered_and_its_response_returns(
    tmp_path: Path, shared_dir: Path
) -> None:
    """A held CV 2 answers nothing on the SM WAN, so its release has no slow step left to
    crash in (before issue 16 it waited on the device): released, its LocalCommand goes
    to the Receive Response URL as the request's one answer, the command is open, and
    the 8.13 returning the device's answer gets the Service Response delivered too."""
    receiver = Receiver()
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
            counter = next_counter()
            held = await gw.send((shared_dir / SYNC).read_bytes(), counter=counter)
            assert response_code(held.content) == "I99"  # held: the AD1 follows
            [item] = (await gw.admin.get("/admin/quarantine")).json()
            done = await gw.admin.post(f"/admin/quarantine/{item['event_ref']}/release")
            assert done.json()["answered"] == "I0"
            await wait_for(receiver, 2)
            [answer] = responses(receiver)
            assert answer.message_id == f"{item['request_id']}:response"
            payload = etree.fromstring(answer.body).find(".//{*}LocalCommand/{*}GBCSPayload")
            assert payload is not None and payload.text
            original = parse_request_id(item["request_id"])
            response = device_answer(base64.b64decode(payload.text), original, "4.1.1")
            returned = return_request(shared_dir, original, response)
            ack = await gw.send(returned)
            assert response_code(ack.content) == "I0", ack.text
            await wait_for(receiver, 3)
            ids = sorted(seen.message_id for seen in responses(receiver))
            assert ids == [f"{original}:local-response", f"{original}:response"]
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
