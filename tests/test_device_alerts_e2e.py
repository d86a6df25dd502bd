"""Device alerts reach their User, through a real gateway, over both device transports.

- embedded simulator, `device_alert_rate = 1.0`: a CV 1 gets its signed Service Response,
  then a signed DeviceAlertMessage for the alert the device raised with its reply;
  an alert in the same reply addressed to an ID that is no registered User, and a
  garbage one, are counted and logged once each, and nothing goes anywhere for them;
- estate link (`duisgw estate serve`'s server on a real socket): the same for the
  reply's alert, then an unsolicited `alert` frame reaches the User too; frames for an
  unregistered recipient or naming the wrong device are counted, not delivered.
"""

from __future__ import annotations

import base64
import logging
from pathlib import Path

import msgspec
import pytest
import trio
from cryptography import x509
from lxml import etree

from gateway.core.clock import SystemClock
from gateway.core.device import DeviceCommand, DeviceReply
from gateway.core.ingest import SchemaSet
from gateway.core.signature import parse_signature, verify_signature
from gateway.core.simulator_config import SimulatorConfig
from gateway.devkit.simulated_responses import simulated_alert
from gateway.devkit.simulator import Simulator
from gateway.edge.metrics import Metrics
from gateway.stores.operator_files import load_inventory, load_schemas
from mmc.catalogue import load_catalogue
from parse_correlate.gbcs import Cra, parse_message
from tests.estate_harness import (
    CV1_READ,
    estate_server,
    node_config,
    start_receiver,
    transport_for,
    wait_until,
)
from tests.harness import (
    default_config,
    fast_simulator,
    next_counter,
    response_code,
    running_gateway,
)
from tests.receiver import Receiver, Seen
from tests.test_lifecycle_e2e import config_with_receiver

SUPPLIER = "90-B3-D5-1F-30-01-00-00"
ESME = "00-DB-12-34-56-78-90-A0"
STRANGER = "90-B3-D5-1F-30-09-09-09"  # no such User in the registry
ALERT_CODE = 0x8F1F


@pytest.fixture(scope="module")
def schemas(shared_dir: Path) -> SchemaSet:
    return load_schemas(
        shared_dir / "duis" / "xsd",
        {v: load_catalogue(v).xsd_file for v in ("5.0", "5.1", "5.3", "5.4")},
    )


def alerting_simulator() -> SimulatorConfig:
    return msgspec.structs.replace(
        fast_simulator(), device_alert_rate=1.0, device_alert_code=ALERT_CODE
    )


def signed_root(body: bytes, pki: Path, schemas: SchemaSet) -> etree._Element:
    root = etree.fromstring(body)
    cert_path = next(pki.glob("dsp-xml-sign-*-ds.cert.pem"))
    cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
    verify_signature(root, parse_signature(root), cert.public_key())  # type: ignore[arg-type]
    assert schemas.error(str(root.get("schemaVersion")), root) is None
    return root


def check_device_alert(
    seen: Seen, pki: Path, schemas: SchemaSet, *, code: int, counter: int | None = None
) -> None:
    """A signed, schema-valid DeviceAlertMessage carrying the device's alert for the User
    (`counter`: the device's alert counter, when the test chose it)."""
    root = signed_root(seen.body, pki, schemas)
    if counter is None:  # the simulator's own numbering: read it, check it is used alike
        payload = root.findtext("{*}Body/{*}DeviceAlertMessage/{*}GBCSPayload") or ""
        counter = parse_message(base64.b64decode(payload)).header.originator_counter
    assert root.findtext("{*}Header/{*}ResponseCode") == "I0"
    assert root.findtext("{*}Header/{*}ResponseID") == f"{ESME}:{SUPPLIER}:{counter}"
    assert root.find("{*}Header/{*}RequestID") is None
    message = root.find("{*}Body/{*}DeviceAlertMessage")
    assert message is not None
    assert message.findtext("{*}AlertCode") == f"{code:04X}"
    gbcs = parse_message(base64.b64decode(message.findtext("{*}GBCSPayload") or ""))
    assert gbcs.header.cra is Cra.ALERT
    assert (gbcs.header.originator, gbcs.header.recipient) == (ESME, SUPPLIER)
    assert gbcs.header.originator_counter == counter
    assert seen.message_id == f"alert:{ESME}:{counter}"


def outcomes(metrics: Metrics, outcome: str) -> float:
    value = metrics.registry.get_sample_value("duisgw_device_alerts_total", {"outcome": outcome})
    return value or 0.0


def refusals_logged(caplog: pytest.LogCaptureFixture, reason: str) -> int:
    return sum(
        1
        for r in caplog.records
        if r.name == "duisgw.device_alerts"
        and "not passed on" in r.getMessage()
        and f"({reason}:" in r.getMessage()
    )


class StrayAlerts:
    """The simulator, plus two alerts nobody may get in every reply: one addressed to an
    ID that is no registered User, and one that is not GBCS at all."""

    def __init__(self, simulator: Simulator) -> None:
        self._simulator = simulator

    async def send(self, command: DeviceCommand) -> DeviceReply:
        reply = await self._simulator.send(command)
        stray = simulated_alert(
            ESME, STRANGER, 99, alert_code=ALERT_CODE, clock=SystemClock(), keys=None
        )
        return msgspec.structs.replace(reply, alerts=(*reply.alerts, stray, b"\xde\xad"))


async def test_embedded_simulator_alert_reaches_the_user(
    tmp_path: Path,
    shared_dir: Path,
    schemas: SchemaSet,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="duisgw.device_alerts")
    receiver = Receiver()
    metrics = Metrics()
    async with trio.open_nursery() as nursery:
        port = await nursery.start(receiver.serve)
        config = config_with_receiver(
            tmp_path, port, default_config(tmp_path, simulator=alerting_simulator())
        )
        inventory = load_inventory(Path(config.registry.inventory_file))
        simulator = Simulator.for_inventory(lambda: inventory, config.simulator, seed=1)
        async with running_gateway(
            config, [tmp_path / "pki"], StrayAlerts(simulator), metrics=metrics
        ) as gw:
            counter = next_counter()
            ack = await gw.send((shared_dir / CV1_READ).read_bytes(), counter=counter)
            assert response_code(ack.content) == "I99", ack.text
            await wait_until(lambda: len(receiver.accepted) >= 2, 20)
            await wait_until(lambda: outcomes(metrics, "malformed") >= 1, 5)
            await trio.sleep(0.3)  # nothing more arrives
            assert len(receiver.accepted) == 2
            response, alert = receiver.accepted
            # The Service Response first, then the alert its reply carried.
            assert response.message_id.endswith(f":{counter}:response")
            assert (
                signed_root(response.body, tmp_path / "pki", schemas).find(
                    "{*}Body/{*}ResponseMessage"
                )
                is not None
            )
            check_device_alert(alert, tmp_path / "pki", schemas, code=ALERT_CODE)
            assert outcomes(metrics, "stored") == 1
            assert outcomes(metrics, "unknown_recipient") == 1
            assert outcomes(metrics, "malformed") == 1
            assert refusals_logged(caplog, "unknown_recipient") == 1
            assert refusals_logged(caplog, "malformed") == 1
            # Nothing waits for the stranger either (stored nowhere, not dead-lettered).
            dead = await gw.admin.get("/admin/outbox/dead-letters")
            assert STRANGER not in dead.text
            pending = await gw.admin.get("/admin/outbox/pending")
            assert STRANGER not in pending.text
        nursery.cancel_scope.cancel()


async def test_estate_link_alerts_reach_the_user(
    tmp_path: Path,
    shared_dir: Path,
    schemas: SchemaSet,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="duisgw.device_alerts")
    server = estate_server(default_config(tmp_path / "estate", simulator=alerting_simulator()))
    metrics = Metrics()
    async with trio.open_nursery() as nursery:
        _, port = await nursery.start(server.serve, "127.0.0.1", 0)
        receiver, receiver_port = await start_receiver(nursery)
        config = node_config(tmp_path / "node", receiver_port, port, "node-a")
        transport = transport_for(config)
        pki = tmp_path / "node" / "pki"
        async with running_gateway(config, [pki], transport, metrics=metrics) as gw:
            await transport.connected.wait()
            counter = next_counter()
            ack = await gw.send((shared_dir / CV1_READ).read_bytes(), counter=counter)
            assert response_code(ack.content) == "I99", ack.text
            await wait_until(lambda: len(receiver.accepted) >= 2, 20)
            response, alert = receiver.accepted[:2]
            assert response.message_id.endswith(f":{counter}:response")
            check_device_alert(alert, pki, schemas, code=ALERT_CODE)

            # An unsolicited alert frame from the estate.
            unsolicited = simulated_alert(
                ESME, SUPPLIER, 500, alert_code=0x8F35, clock=SystemClock(), keys=None
            )
            assert await server.send_alert(ESME, unsolicited) == "node-a"
            await wait_until(lambda: len(receiver.accepted) >= 3, 20)
            check_device_alert(receiver.accepted[2], pki, schemas, code=0x8F35, counter=500)

            # The same frame again is stored once; one for a stranger or naming another
            # device is counted and not delivered.
            stranger = simulated_alert(
                ESME, STRANGER, 501, alert_code=0x8F35, clock=SystemClock(), keys=None
            )
            assert await server.send_alert(ESME, unsolicited)
            assert await server.send_alert(ESME, stranger)
            assert await server.send_alert("00-DB-12-34-56-78-90-A1", unsolicited)
            await wait_until(
                lambda: (
                    outcomes(metrics, "duplicate") == 1
                    and outcomes(metrics, "unknown_recipient") == 1
                    and outcomes(metrics, "wrong_device") == 1
                ),
                10,
            )
            await trio.sleep(0.3)
            assert len(receiver.accepted) == 3
            assert outcomes(metrics, "stored") == 2
            assert refusals_logged(caplog, "unknown_recipient") == 1
            assert refusals_logged(caplog, "wrong_device") == 1
            assert server.nodes == {"node-a": 1}  # the link survived every one of them
        nursery.cancel_scope.cancel()
