"""Anomaly detection through a real gateway: hold at the threshold, AD1 alert, survive a
restart, release exactly once, delete with notice; and the outbox rides out a User outage."""

from __future__ import annotations

import json
from pathlib import Path

import msgspec
import pytest
import trio
from lxml import etree

from gateway.cli import main
from gateway.core.config import Config, DeliveryConfig
from tests.harness import next_counter, response_code, running_gateway
from tests.receiver import Receiver
from tests.test_lifecycle_e2e import config_with_receiver

ECS17B = "duis/samples/requests/ECS17b_4.1.1_SINGLE_SUCCESS_REQUEST_DUIS.XML"
RULES = """
[[rules]]
user_id = "*"
srv = "4.1.1"
window_seconds = 3600
limit = 2
kind = "user_quarantine"
"""


def with_rules(config: Config, tmp_path: Path) -> Config:
    rules = tmp_path / "rules.toml"
    rules.write_text(RULES)
    thresholds = msgspec.structs.replace(config.thresholds, rules_file=str(rules))
    delivery = DeliveryConfig(backoff_base_seconds=0.02, backoff_cap_seconds=0.1)
    return msgspec.structs.replace(config, thresholds=thresholds, delivery=delivery)


def kinds(receiver: Receiver) -> list[str]:
    out = []
    for seen in receiver.accepted:
        root = etree.fromstring(seen.body)
        if root.find(".//{*}DCCAlertMessage") is not None:
            breach = root.find(".//{*}QuarantinedRequest/*")
            assert breach is not None
            out.append(f"AD1:{etree.QName(breach).localname}")
        else:
            out.append(response_code(seen.body))
    return out


async def wait_for(receiver: Receiver, count: int) -> None:
    with trio.fail_after(20):
        while len(receiver.accepted) < count:
            await trio.sleep(0.01)


async def test_hold_restart_release_delete(
    tmp_path: Path,
    shared_dir: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    receiver = Receiver()
    xml = (shared_dir / ECS17B).read_bytes()
    async with trio.open_nursery() as nursery:
        port = await nursery.start(receiver.serve)
        config = with_rules(config_with_receiver(tmp_path, port), tmp_path)
        key_dirs = [tmp_path / "pki"]
        async with running_gateway(config, key_dirs) as gw:
            for _ in range(4):
                ack = await gw.send(xml, counter=next_counter())
                assert response_code(ack.content) == "I99"
            await wait_for(receiver, 4)
            assert sorted(kinds(receiver)) == sorted(
                ["I0", "I0", "AD1:ADUserThresholdBreach", "AD1:ADUserThresholdBreach"]
            )
            held = (await gw.admin.get("/admin/quarantine")).json()
            assert len(held) == 2 and {h["breach"] for h in held} == {"ADUserThresholdBreach"}
            metrics = (await gw.client.get(gw.admin_url + "/metrics")).text
            assert 'duisgw_quarantined_total{breach="ADUserThresholdBreach"} 2.0' in metrics

        # A restart keeps every held request.
        async with running_gateway(config, key_dirs) as gw:
            held = (await gw.admin.get("/admin/quarantine")).json()
            assert len(held) == 2
            first, second = (h["event_ref"] for h in held)
            # Pages: the oldest first, then on from the last ref seen.
            page = (await gw.admin.get("/admin/quarantine?limit=1")).json()
            assert [h["event_ref"] for h in page] == [first]
            page = (await gw.admin.get(f"/admin/quarantine?after_ref={first}")).json()
            assert [h["event_ref"] for h in page] == [second]
            # The operator's CLI sees the same (run in a thread: it is a blocking client).
            monkeypatch.setenv("DUISGW_ADMIN_TOKEN", gw.admin_token)
            code = await trio.to_thread.run_sync(
                main, ["quarantine", "list", "--admin", gw.admin_url]
            )
            assert code == 0
            listed = json.loads(capsys.readouterr().out)
            assert [h["event_ref"] for h in listed] == [first, second]
            code = await trio.to_thread.run_sync(
                main,
                ["quarantine", "list", "--admin", gw.admin_url, "--after-ref", str(first)],
            )
            assert code == 0
            assert [h["event_ref"] for h in json.loads(capsys.readouterr().out)] == [second]
            shown = (await gw.admin.get(f"/admin/quarantine/{first}")).json()
            assert "ReadInstantaneousImportRegisters" in shown["request_xml"]

            released = await gw.admin.post(f"/admin/quarantine/{first}/release")
            assert released.status_code == 200 and released.json()["answered"] == "I99"
            again = await gw.admin.post(f"/admin/quarantine/{first}/release")
            assert again.status_code == 409
            await wait_for(receiver, 5)
            assert kinds(receiver)[4] == "I0"

            deleted = await gw.admin.post(f"/admin/quarantine/{second}/delete")
            assert deleted.status_code == 200
            await wait_for(receiver, 6)
            assert kinds(receiver)[5] == "E1"
            left = (await gw.admin.get("/admin/quarantine")).json()
            assert left == []
            # Released requests are processed exactly once: one response per RequestID.
            ids = [s.message_id for s in receiver.accepted]
            assert len(ids) == len(set(ids))
        nursery.cancel_scope.cancel()


async def test_user_endpoint_down_then_back(tmp_path: Path, shared_dir: Path) -> None:
    """Every response arrives exactly once per RequestID after the User's outage."""
    down = True
    receiver = Receiver(status_for=lambda seen: 503 if down else 200)
    xml = (shared_dir / ECS17B).read_bytes()
    async with trio.open_nursery() as nursery:
        port = await nursery.start(receiver.serve)
        config = with_rules(config_with_receiver(tmp_path, port), tmp_path)
        config = msgspec.structs.replace(
            config, thresholds=msgspec.structs.replace(config.thresholds, rules_file=None)
        )
        async with running_gateway(config, [tmp_path / "pki"]) as gw:
            sent = []
            for _ in range(5):
                counter = next_counter()
                sent.append(counter)
                assert response_code((await gw.send(xml, counter=counter)).content) == "I99"
            with trio.fail_after(20):
                while len(receiver.attempts) < 8:
                    await trio.sleep(0.01)
            assert receiver.accepted == []
            down = False
            await wait_for(receiver, 5)
            await trio.sleep(0.3)  # nothing further may arrive
            got = [s.message_id.split(":")[2] for s in receiver.accepted]
            assert sorted(int(c) for c in got) == sorted(sent)
            assert len(receiver.accepted) == 5
            sequences = [s.sequence for s in receiver.accepted]
            assert sequences == sorted(sequences)
        nursery.cancel_scope.cancel()


async def test_held_request_expires_and_the_user_is_told(tmp_path: Path, shared_dir: Path) -> None:
    receiver = Receiver()
    xml = (shared_dir / ECS17B).read_bytes()
    async with trio.open_nursery() as nursery:
        port = await nursery.start(receiver.serve)
        config = with_rules(config_with_receiver(tmp_path, port), tmp_path)
        thresholds = msgspec.structs.replace(
            config.thresholds,
            quarantine_retention_seconds=0.2,
            quarantine_expiry_check_seconds=0.1,
        )
        config = msgspec.structs.replace(config, thresholds=thresholds)
        async with running_gateway(config, [tmp_path / "pki"]) as gw:
            for _ in range(3):  # limit 2: the third is held
                await gw.send(xml, counter=next_counter())
            await wait_for(receiver, 4)  # 2 responses, 1 AD1, 1 expiry notice
            assert sorted(kinds(receiver)) == sorted(
                ["I0", "I0", "AD1:ADUserThresholdBreach", "E1"]
            )
            # Expired rows leave the store: nothing is held any more.
            assert (await gw.admin.get("/admin/quarantine")).json() == []
        nursery.cancel_scope.cancel()
