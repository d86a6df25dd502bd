"""Device replies are checked before the gateway signs a Service Response from them:
correlation with the command sent, and the device's signature where it is known."""

from __future__ import annotations

import datetime as dt
import logging
import random
from pathlib import Path

import msgspec
import pytest
import trio
import trio.testing
from cryptography.hazmat.primitives.asymmetric import ec

from gateway.core.clock import FixedClock
from gateway.core.device import DeviceCommand, DeviceOutcome, DeviceReply, Priority
from gateway.core.device_reply_check import checked_reply
from gateway.core.registry import Device, Inventory
from gateway.core.simulator_config import SimulatorConfig
from gateway.devkit.estate_server import EstateServer
from gateway.devkit.simulator import Simulator
from gateway.stores.operator_files import load_inventory
from mmc.identifiers import Eui64, RequestId
from parse_correlate.commands import CommandFacts, DeviceType, build_command
from parse_correlate.correlate import sign_pre_command
from parse_correlate.device_response_check import RefusalReason
from parse_correlate.gbcs_mac import KeyAgreement
from tests.estate_harness import (
    CV1_READ,
    FAST_LINK,
    node_config,
    start_receiver,
    transport_for,
    wait_until,
)
from tests.harness import default_config, next_counter, response_code, running_gateway

USER = "90-B3-D5-1F-30-01-00-00"
ESME = "00-DB-12-34-56-78-90-A0"
HUB = "00-DB-12-34-56-78-90-A2"
NOW = dt.datetime(2025, 6, 1, 12, tzinfo=dt.UTC)


class MixedUpEstate:
    """Devices whose replies go astray: the second command gets the first one's
    response, the third a reply that is not GBCS at all."""

    def __init__(self, devices: Simulator) -> None:
        self._devices = devices
        self._previous: bytes | None = None
        self.count = 0

    async def send(self, command: DeviceCommand) -> DeviceReply:
        reply = await self._devices.send(command)
        self.count += 1
        if self.count == 2:
            assert self._previous is not None
            return msgspec.structs.replace(reply, gbcs=self._previous)
        if self.count == 3:
            return msgspec.structs.replace(reply, gbcs=b"\xdd\x00not GBCS")
        self._previous = reply.gbcs
        return reply


async def test_a_reply_that_does_not_answer_the_command_gets_e21_through_the_gateway(
    tmp_path: Path, shared_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    read = (shared_dir / CV1_READ).read_bytes()
    estate_config = default_config(tmp_path / "estate")
    inventory = load_inventory(Path(estate_config.registry.inventory_file))
    devices = MixedUpEstate(
        Simulator.for_inventory(lambda: inventory, estate_config.simulator, seed=3)
    )
    server = EstateServer(devices, FAST_LINK)
    caplog.set_level(logging.WARNING, logger="duisgw.lifecycle")
    async with trio.open_nursery() as nursery:
        _, port = await nursery.start(server.serve, "127.0.0.1", 0)
        receiver, receiver_port = await start_receiver(nursery)
        config = node_config(tmp_path / "node", receiver_port, port, "node-check")
        async with running_gateway(
            config, [tmp_path / "node" / "pki"], transport_for(config)
        ) as gw:
            for expected in range(1, 4):
                ack = await gw.send(read, counter=next_counter())
                assert response_code(ack.content) == "I99"
                await wait_until(lambda n=expected: len(receiver.accepted) == n)
        codes = [response_code(seen.body) for seen in receiver.accepted]
        assert codes == ["I0", "E21", "E21"]
        reasons = [r.getMessage() for r in caplog.records if "reply was refused" in r.getMessage()]
        assert len(reasons) == 2, reasons
        assert "uncorrelated" in reasons[0] and "counter" in reasons[0]
        assert "malformed" in reasons[1]
        nursery.cancel_scope.cancel()


class SigningDevice:
    def __init__(self, key: ec.EllipticCurvePrivateKey) -> None:
        self._key = key

    def key_agreement(self, device_id: Eui64, user_id: Eui64) -> KeyAgreement | None:
        return None

    def signing_key(self, device_id: Eui64) -> ec.EllipticCurvePrivateKey:
        return self._key


async def test_a_signed_reply_whose_signature_fails_is_refused(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """A Signed Pre-Command (CV 5) is answered by a device-signed response: it is passed
    on when the signature verifies with the device's key, refused when one byte flips."""
    device_key = ec.generate_private_key(ec.SECP256R1())
    user_key = ec.generate_private_key(ec.SECP256R1())
    pre = build_command(
        "1.6",
        RequestId(USER, ESME, 9),
        CommandFacts(device_type=DeviceType.ESME),
        originator_counter=9,
        now=NOW,
        critical=True,
    ).gbcs
    command = DeviceCommand(
        request_id=RequestId(USER, ESME, 9),
        srv_variant="1.6",
        device_id=ESME,
        device_type="ESME",
        hub_id=HUB,
        gbcs=sign_pre_command(pre, user_key),
        priority=Priority.PREPAYMENT_AND_CRITICAL,
    )
    inventory = Inventory(
        [
            Device(device_id=HUB, device_type="CHF", status="commissioned"),
            Device(device_id=ESME, device_type="ESME", status="commissioned", chf_id=HUB),
        ]
    )
    simulator = Simulator(
        lambda: inventory,
        SimulatorConfig(),
        FixedClock(NOW),
        random.Random(1),
        keys=SigningDevice(device_key),
    )
    reply = await simulator.send(command)
    assert reply.outcome is DeviceOutcome.RESPONDED and reply.gbcs is not None
    public = device_key.public_key()
    assert checked_reply(command, reply, public) == (reply, None)
    tampered = bytearray(reply.gbcs)
    tampered[-5] ^= 0x01  # inside the signature
    bad, refused = checked_reply(
        command, msgspec.structs.replace(reply, gbcs=bytes(tampered)), public
    )
    assert bad.outcome is DeviceOutcome.NO_RESPONSE  # -> E21
    assert refused is not None and refused.reason is RefusalReason.SIGNATURE_INVALID
    # Without the device's certificate the signature cannot be checked; correlation still is.
    assert (
        checked_reply(command, msgspec.structs.replace(reply, gbcs=bytes(tampered)), None)[1]
        is None
    )
