"""What the simulated devices answer decodes like a real meter's answer (issue 18).

For every SRV of DUIS 5.4 and every device type, the gateway's command goes to the
simulator; where the command names a real GBCS use case and the simulator encodes that
use case, the answer must correlate with the command and turn into typed MMC output,
valid under every served version's schema.
"""

from __future__ import annotations

import datetime as dt
import random

from lxml import etree

from gateway.core.clock import FixedClock
from gateway.core.device import DeviceCommand, Priority
from gateway.devkit.simulated_responses import simulated_response
from mmc.catalogue import load_catalogue
from mmc.identifiers import RequestId
from parse_correlate.commands import SIMULATED_MESSAGE_CODE, CommandFacts, DeviceType, build_command
from parse_correlate.gbcs import parse_message
from parse_correlate.mmc_output import SUPPORTED_VERSIONS, render_mmc_output
from parse_correlate.response_correlation import correlate_response, facts_from_command

USER = "90-B3-D5-1F-30-01-00-00"
DEVICE = "00-DB-12-34-56-78-90-A0"
HUB = "00-DB-12-34-56-78-90-A2"
NOW = dt.datetime(2025, 6, 1, 12, 0, tzinfo=dt.UTC)
FIRMWARE = bytes.fromhex("0123ABCD")


def test_simulated_answers_decode_as_real_ones(
    mmc_schemas: dict[str, etree.XMLSchema],
) -> None:
    rng = random.Random(18)
    real = []
    counter = 1000
    for srv in load_catalogue("5.4").srvs.values():
        if srv.non_device:
            continue
        for device_type in DeviceType:
            counter += 1
            request_id = RequestId(USER, DEVICE, counter)
            built = build_command(
                srv.variant, request_id, CommandFacts(device_type=device_type),
                originator_counter=counter, now=NOW,
            )  # fmt: skip
            if built.message_code == SIMULATED_MESSAGE_CODE:
                continue  # no single use case for this SRV and device type
            command = DeviceCommand(
                request_id=request_id, srv_variant=srv.variant, device_id=DEVICE,
                device_type=str(device_type), hub_id=HUB, gbcs=built.gbcs,
                priority=Priority.ON_DEMAND,
            )  # fmt: skip
            gbcs = simulated_response(
                command, rng, clock=FixedClock(NOW), keys=None, firmware_version=FIRMWARE
            )
            assert gbcs is not None
            response = parse_message(gbcs)
            if response.payload.startswith(b"SIMULATED RESPONSE"):
                continue  # a read this simulator does not encode: it says so
            correlate_response(response, facts_from_command(parse_message(built.gbcs)))
            for version in SUPPORTED_VERSIONS:
                output = render_mmc_output(response, gbcs, version, srv_hint=srv.variant)
                document = etree.fromstring(output.xml)
                assert mmc_schemas[version].validate(document), (srv.variant, device_type)
                # Encrypted values (ECS17b's registers) wait for the User's key.
                encrypted = "encrypted" in (output.note or "")
                assert output.typed or encrypted, (srv.variant, device_type, output.note)
            if output.typed:
                assert b'MessageSuccess="true"' in output.xml
                real.append((srv.variant, str(device_type)))
    # Outcome-only use cases of meters and gas devices, and the encoded reads.
    assert len(real) >= 60, real
    assert {("4.18", "ESME"), ("11.2", "GSME"), ("7.4", "GSME"), ("11.2", "PPMID")} <= set(real)
