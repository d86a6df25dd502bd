"""Commands for local delivery end to end: CV 2, 3, 6, 7 and SRV 8.13 closing the loop.

A real gateway on the embedded default, a User's Receive Response server, and a
device transport that records what reaches the SM WAN. Every answer is checked:
signature (the DCC key), XSD of the request's version, code, RequestID.
"""

from __future__ import annotations

import base64
import datetime as dt
import random
from pathlib import Path

import msgspec
import pytest
import trio
from lxml import etree

from gateway.core.clock import SystemClock
from gateway.core.commands import device_command
from gateway.core.device import DeviceCommand, DeviceReply, Priority
from gateway.core.ingest import SchemaSet
from gateway.core.stages import RequestChecks
from gateway.devkit.client import sign_request
from gateway.devkit.estate import default_inventory
from gateway.devkit.simulated_responses import simulated_response
from gateway.devkit.simulator import Simulator
from gateway.stores.certfiles import find_signing_key
from gateway.stores.operator_files import load, load_schemas
from mmc.catalogue import load_catalogue
from mmc.identifiers import RequestId, parse_request_id
from parse_correlate.correlate import sign_pre_command
from parse_correlate.gbcs import parse_message
from tests.harness import Gateway, fast_simulator, next_counter, response_code, running_gateway
from tests.receiver import Receiver
from tests.test_lifecycle_e2e import (
    check_signed,
    config_with_receiver,
    request_id_of,
    signed_pre_command_request,
    wait_for,
)

SUPPLIER = "90-B3-D5-1F-30-01-00-00"
NETWORK = "90-B3-D5-1F-30-02-00-00"
ESME = "00-DB-12-34-56-78-90-A0"
REQUESTS = "duis/samples/requests"
CV2_READ = "ECS17b_4.1.1_REQUEST_DUIS.XML"  # the RTDS CV 2 template: 4.1.1 to the ESME
CV1_READ = "ECS17b_4.1.1_SINGLE_SUCCESS_REQUEST_DUIS.XML"
CRITICAL = "ECS44_7.3_SUCCESS_REQUEST_DUIS.XML"  # CV 4, 7.3 to the ESME
RETURN = "8.13_RETURN_LOCAL_COMMAND_RESPONSE_CS06_REQUEST_DUIS.XML"
CS06_FUTURE_DATED = "CS06_11.3_FUTURE_DATED_SUCCESS_REQUEST_DUIS.XML"
VERSIONS = ("5.0", "5.1", "5.3", "5.4")


class RecordingTransport:
    """The embedded simulator, remembering every command that went over the SM WAN."""

    def __init__(self) -> None:
        inventory = default_inventory()
        self._simulator = Simulator.for_inventory(lambda: inventory, fast_simulator())
        self.sent: list[DeviceCommand] = []

    async def send(self, command: DeviceCommand) -> DeviceReply:
        self.sent.append(command)
        return await self._simulator.send(command)


@pytest.fixture(scope="module")
def schemas(shared_dir: Path) -> SchemaSet:
    return load_schemas(
        shared_dir / "duis" / "xsd", {v: load_catalogue(v).xsd_file for v in VERSIONS}
    )


def template(shared: Path, name: str, version: str = "5.4", cv: int | None = None) -> bytes:
    xml = (shared / REQUESTS / name).read_bytes()
    xml = xml.replace(b'schemaVersion="5.4"', f'schemaVersion="{version}"'.encode())
    if cv is not None:
        root = etree.fromstring(xml)
        element = root.find("{*}Header/{*}CommandVariant")
        assert element is not None
        element.text = str(cv)
        xml = etree.tostring(root)
    return xml


def return_request(
    shared: Path, original: RequestId | None, response: bytes, version: str = "5.4"
) -> bytes:
    """An 8.13 from the RTDS template, carrying `response` (and `original`, if given)."""
    root = etree.fromstring(template(shared, RETURN, version))
    body = root.find("{*}Body/{*}ReturnLocalCommandResponse")
    assert body is not None
    original_element = body.find("{*}OriginalRequestID")
    assert original_element is not None
    if original is None:
        body.remove(original_element)
    else:
        original_element.text = str(original)
    gbcs = body.find("{*}DeviceGBCSResponse")
    assert gbcs is not None
    gbcs.text = base64.b64encode(response).decode()
    return etree.tostring(root)


def local_command_of(root: etree._Element) -> bytes:
    payload = root.find("{*}Body/{*}ResponseMessage/{*}LocalCommand/{*}GBCSPayload")
    assert payload is not None and payload.text, etree.tostring(root)
    return base64.b64decode(payload.text)


def device_answer(command_gbcs: bytes, request_id: RequestId, srv: str) -> bytes:
    """What the simulated device answers when the User delivers the command over the HAN."""
    command = DeviceCommand(
        request_id=request_id,
        srv_variant=srv,
        device_id=request_id.target,
        device_type="ESME",
        hub_id=None,
        gbcs=command_gbcs,
        priority=Priority.ON_DEMAND,
    )
    answer = simulated_response(
        command, random.Random(1), clock=SystemClock(), keys=None, firmware_version=b"\x01"
    )
    assert answer is not None
    return answer


def cv1_command(tmp_path: Path, signed_cv2: bytes) -> bytes:
    """The GBCS a CV 1 with the CV 2's RequestID would send to the device."""
    as_cv1 = signed_cv2.replace(
        b"<sr:CommandVariant>2</sr:CommandVariant>", b"<sr:CommandVariant>1</sr:CommandVariant>"
    )
    loaded = load(config_with_receiver(tmp_path, 1), SystemClock())
    checks = RequestChecks(loaded.versions, None, SystemClock())
    request = checks.verify(as_cv1, loaded.snapshots.current.certstore, check_signature=False)
    return device_command(request, default_inventory(), dt.datetime.now(dt.UTC)).gbcs


async def send_signed(gw: Gateway, xml: bytes, path: str, counter: int) -> tuple[bytes, bytes]:
    """(the signed request, the answer's body), posted to `path`."""
    signed, _ = sign_request(xml, gw.key_dirs, counter=counter)
    response = await gw.post(path, signed)
    assert response.status_code == 200, response.text
    return signed, response.content


@pytest.mark.parametrize("version", VERSIONS)
async def test_cv2_local_command_then_8_13_gives_the_service_response(
    tmp_path: Path, shared_dir: Path, schemas: SchemaSet, version: str
) -> None:
    receiver = Receiver()
    transport = RecordingTransport()
    async with trio.open_nursery() as nursery:
        port = await nursery.start(receiver.serve)
        config = config_with_receiver(tmp_path, port)
        async with running_gateway(config, [tmp_path / "pki"], transport) as gw:
            cv2 = template(shared_dir, CV2_READ, version)
            # The Non-Device Service, where the DCC's tooling sends CV 2; serviceS is E13.
            _, wrong = await send_signed(gw, cv2, "/api/v1/serviceS", next_counter())
            assert response_code(wrong) == "E13"
            counter = next_counter()
            signed, answer = await send_signed(gw, cv2, "/api/v1/serviceD", counter)
            root = check_signed(answer, tmp_path, schemas)
            assert root.get("schemaVersion") == version
            assert response_code(answer) == "I0"
            original = parse_request_id(request_id_of(root))
            assert original == RequestId(SUPPLIER, ESME, counter)
            command = local_command_of(root)
            assert command == cv1_command(tmp_path, signed)  # what a CV 1 would send
            assert transport.sent == []  # nothing went over the SM WAN

            # The User delivers it over the HAN and returns the device's answer (8.13).
            response = device_answer(command, original, "4.1.1")
            returned = return_request(shared_dir, original, response, version)
            _, ack = await send_signed(gw, returned, "/api/v1/serviceD", next_counter())
            check_signed(ack, tmp_path, schemas)
            assert response_code(ack) == "I0"
            await wait_for(receiver, 1)
            [delivered] = receiver.accepted
            assert delivered.message_id == f"{original}:local-response"
            service_response = check_signed(delivered.body, tmp_path, schemas)
            assert service_response.get("schemaVersion") == version
            assert request_id_of(service_response) == str(original)
            assert response_code(delivered.body) == "I0"
            payload = service_response.find(".//{*}ResponseMessage/{*}GBCSPayload")
            assert payload is not None and base64.b64decode(payload.text or "") == response
            assert service_response.findtext(".//{*}ServiceReferenceVariant") == "4.1.1"

            # Returned once: a second 8.13 with the same response matches nothing open.
            _, again = await send_signed(gw, returned, "/api/v1/serviceD", next_counter())
            assert response_code(again) == "E081301"
            assert transport.sent == []
        nursery.cancel_scope.cancel()


async def test_8_13_refusals_name_what_did_not_match(tmp_path: Path, shared_dir: Path) -> None:
    async with running_gateway(config_with_receiver(tmp_path, 1), [tmp_path / "pki"]) as gw:
        counter = next_counter()
        _, answer = await send_signed(
            gw, template(shared_dir, CV2_READ), "/api/v1/serviceD", counter
        )
        original = RequestId(SUPPLIER, ESME, counter)
        command = local_command_of(etree.fromstring(answer))
        response = device_answer(command, original, "4.1.1")

        async def returned(xml: bytes) -> str:
            _, ack = await send_signed(gw, xml, "/api/v1/serviceD", next_counter())
            return response_code(ack)

        # Names a command never issued (another counter), or another User's request.
        never = RequestId(SUPPLIER, ESME, counter + 1)
        assert await returned(return_request(shared_dir, never, response)) == "E081301"
        other_user = RequestId("90-B3-D5-1F-30-03-00-00", ESME, counter)
        assert await returned(return_request(shared_dir, other_user, response)) == "E081301"
        # The right command, but not its answer: another message code, or not GBCS at all.
        message = parse_message(response)
        wrong_code = bytearray(response)
        # DF, transaction id (1+9), two system titles (2 x 9), date-time, then the
        # other-information's length and the message code (parse_correlate/gbcs.py).
        date_time = 13 if message.header.date_time is not None else 1
        code_at = response.index(message.block) + 1 + 10 + 18 + date_time + 1
        assert wrong_code[code_at : code_at + 2] == message.header.message_code.to_bytes(2, "big")
        wrong_code[code_at + 1] ^= 0x01
        assert await returned(return_request(shared_dir, original, bytes(wrong_code))) == "E081302"
        assert await returned(return_request(shared_dir, original, b"not gbcs")) == "E081302"
        # Without OriginalRequestID the response's own header names the command: accepted.
        assert await returned(return_request(shared_dir, None, response)) == "I0"
        assert await returned(return_request(shared_dir, None, response)) == "E081301"

        # Local delivery is for the device's supplier (E17 holds): the ED may read the
        # ESME over the SM WAN, not have a command handed over for the premises.
        signed, _ = sign_request(
            template(shared_dir, CV2_READ), gw.key_dirs, counter=next_counter(), as_user=NETWORK
        )
        refused = await gw.post("/api/v1/serviceD", signed)
        assert response_code(refused.content) == "E17"


@pytest.mark.parametrize("version", VERSIONS)
async def test_cv3_sends_and_returns_a_local_copy_then_the_service_response(
    tmp_path: Path, shared_dir: Path, schemas: SchemaSet, version: str
) -> None:
    receiver = Receiver()
    transport = RecordingTransport()
    async with trio.open_nursery() as nursery:
        port = await nursery.start(receiver.serve)
        config = config_with_receiver(tmp_path, port)
        async with running_gateway(config, [tmp_path / "pki"], transport) as gw:
            cv3 = template(shared_dir, CV2_READ, version, cv=3)
            _, wrong = await send_signed(gw, cv3, "/api/v1/serviceD", next_counter())
            assert response_code(wrong) == "E13"  # CV 3 is the Send Command Service's
            counter = next_counter()
            _, answer = await send_signed(gw, cv3, "/api/v1/serviceS", counter)
            root = check_signed(answer, tmp_path, schemas)  # signed: it carries a command
            assert root.get("schemaVersion") == version  # and valid under its version's XSD
            assert response_code(answer) == "I99"
            copy = local_command_of(root)
            await wait_for(receiver, 1)
            [sent] = [c for c in transport.sent if c.request_id.counter == counter]
            assert sent.gbcs == copy  # the local copy is the command the SM WAN carried
            [delivered] = receiver.accepted
            assert delivered.message_id == f"{SUPPLIER}:{ESME}:{counter}:response"
            service_response = check_signed(delivered.body, tmp_path, schemas)
            assert service_response.get("schemaVersion") == version
            assert response_code(delivered.body) == "I0"
            assert service_response.find(".//{*}GBCSPayload") is not None
        nursery.cancel_scope.cancel()


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize("cv", [6, 7])
async def test_signed_pre_command_for_local_delivery(
    tmp_path: Path, shared_dir: Path, schemas: SchemaSet, cv: int, version: str
) -> None:
    transport = RecordingTransport()
    key_dirs = [tmp_path / "pki"]
    async with running_gateway(config_with_receiver(tmp_path, 1), key_dirs, transport) as gw:
        counter = next_counter()
        cv4 = template(shared_dir, CRITICAL, version)
        _, pre = await send_signed(gw, cv4, "/api/v1/serviceT", counter)
        payload = etree.fromstring(pre).find(".//{*}PreCommand/{*}GBCSPayload")
        assert payload is not None and payload.text
        _, role_key = find_signing_key(key_dirs, SUPPLIER, "02")
        signed_gbcs = sign_pre_command(base64.b64decode(payload.text), role_key)
        request = signed_pre_command_request(cv4, signed_gbcs).replace(
            b"<sr:CommandVariant>5<", f"<sr:CommandVariant>{cv}<".encode()
        )
        path = "/api/v1/serviceD" if cv == 6 else "/api/v1/serviceS"
        _, answer = await send_signed(gw, request, path, counter)
        root = check_signed(answer, tmp_path, schemas)
        assert root.get("schemaVersion") == version
        assert response_code(answer) == ("I0" if cv == 6 else "I99")
        assert local_command_of(root) == signed_gbcs  # the command a CV 5 would send
        if cv == 6:
            assert transport.sent == []
        else:
            with trio.fail_after(10):
                while not transport.sent:
                    await trio.sleep(0.01)
            assert [c.gbcs for c in transport.sent] == [signed_gbcs]


async def test_the_rtds_8_13_closes_its_cs06_local_command_with_the_device_signature(
    tmp_path: Path, shared_dir: Path, schemas: SchemaSet
) -> None:
    """The 8.13 sample returns the RTDS CS06 response (11.3 Activate Firmware, counter
    1000, signed by the ESME): after the CV 4 and the CV 6 it answers, it is accepted,
    and the device's signature is checked with the ESME's certificate."""
    receiver = Receiver()
    key_dirs = [tmp_path / "pki"]
    async with trio.open_nursery() as nursery:
        port = await nursery.start(receiver.serve)
        config = config_with_receiver(tmp_path, port)
        trust = msgspec.structs.replace(
            config.trust,
            device_certificate_dirs=(str(shared_dir / "gbcs" / "rtds" / "keystore"),),
        )
        config = msgspec.structs.replace(config, trust=trust)
        async with running_gateway(config, key_dirs) as gw:
            # CS06 11.3 immediate (the template's future-dated twin without its date).
            root = etree.fromstring(template(shared_dir, CS06_FUTURE_DATED))
            execution = root.find(".//{*}ExecutionDateTime")
            assert execution is not None
            execution.getparent().remove(execution)  # type: ignore[union-attr]
            cv4 = etree.tostring(root)
            _, pre = await send_signed(gw, cv4, "/api/v1/serviceT", 1000)
            payload = etree.fromstring(pre).find(".//{*}PreCommand/{*}GBCSPayload")
            assert payload is not None and payload.text
            _, role_key = find_signing_key(key_dirs, SUPPLIER, "02")
            signed_gbcs = sign_pre_command(base64.b64decode(payload.text), role_key)
            cv6 = signed_pre_command_request(cv4, signed_gbcs).replace(
                b"<sr:CommandVariant>5<", b"<sr:CommandVariant>6<"
            )
            _, local = await send_signed(gw, cv6, "/api/v1/serviceD", 1000)
            assert response_code(local) == "I0"

            sample = (shared_dir / REQUESTS / RETURN).read_bytes()
            sample_root = etree.fromstring(sample)
            gbcs_element = sample_root.find(".//{*}DeviceGBCSResponse")
            assert gbcs_element is not None and gbcs_element.text
            genuine = base64.b64decode(gbcs_element.text)
            forged = genuine[:-1] + bytes([genuine[-1] ^ 0x01])  # the signature's last byte
            original = RequestId(SUPPLIER, ESME, 1000)
            forged_request = return_request(shared_dir, original, forged)
            _, refused = await send_signed(gw, forged_request, "/api/v1/serviceD", 1001)
            assert response_code(refused) == "E081303"
            # The sample itself, unchanged but for its signature, as a User sends it.
            signed, _ = sign_request(sample, key_dirs, counter=1002)
            accepted = await gw.post("/api/v1/serviceD", signed)
            assert response_code(accepted.content) == "I0", accepted.text
            await wait_for(receiver, 1)
            [delivered] = receiver.accepted
            service_response = check_signed(delivered.body, tmp_path, schemas)
            assert request_id_of(service_response) == str(original)
            assert service_response.findtext(".//{*}ServiceReferenceVariant") == "11.3"
        nursery.cancel_scope.cancel()
