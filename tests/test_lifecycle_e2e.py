"""The full life cycle against the embedded default, with a real User-side HTTP server.

CV 1 (I99, then the signed Service Response to the Receive Response URL), CV 2
(synchronous: the command for local delivery), CV 4 -> 5 (Pre-Command, signed by the
User, correlated), CV 8 (DCC-only). Every response is checked: signature, XSD of its
version, RequestID. tests/test_local_delivery_e2e.py has CV 2, 3, 6, 7 and 8.13.
"""

from __future__ import annotations

import base64
import re
from pathlib import Path

import msgspec
import pytest
import trio
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from lxml import etree

from gateway.core.config import Config
from gateway.core.ingest import SchemaSet
from gateway.core.signature import parse_signature, verify_signature
from gateway.devkit.estate import DEFAULT_USERS_TOML
from gateway.stores.certfiles import find_signing_key
from gateway.stores.operator_files import load_schemas
from mmc.catalogue import load_catalogue
from parse_correlate.correlate import sign_pre_command
from tests.harness import (
    default_config,
    next_counter,
    response_code,
    running_gateway,
    set_response_url,
)
from tests.receiver import Receiver

SUPPLIER = "90-B3-D5-1F-30-01-00-00"
REQUESTS = "duis/samples/requests"


@pytest.fixture(scope="module")
def schemas(shared_dir: Path) -> SchemaSet:
    return load_schemas(
        shared_dir / "duis" / "xsd",
        {v: load_catalogue(v).xsd_file for v in ("5.0", "5.1", "5.3", "5.4")},
    )


def config_with_receiver(tmp_path: Path, port: int, config: Config | None = None) -> Config:
    """`config` (the embedded default's in `tmp_path` if None) with supplier-1's responses
    sent to a receiver on `port`."""
    config = config if config is not None else default_config(tmp_path)
    users = tmp_path / "users-with-url.toml"
    users.write_text(
        set_response_url(DEFAULT_USERS_TOML, SUPPLIER, f"http://127.0.0.1:{port}/duis")
    )
    registry = msgspec.structs.replace(config.registry, users_file=str(users))
    return msgspec.structs.replace(config, registry=registry)


def check_signed(body: bytes, tmp_path: Path, schemas: SchemaSet) -> etree._Element:
    root = etree.fromstring(body)
    cert_path = next((tmp_path / "pki").glob("dsp-xml-sign-*-ds.cert.pem"))
    cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
    verify_signature(root, parse_signature(root), cert.public_key())  # type: ignore[arg-type]
    assert schemas.error(str(root.get("schemaVersion")), root) is None
    return root


def request_id_of(root: etree._Element) -> str:
    element = root.find("{*}Header/{*}RequestID")
    assert element is not None and element.text
    return element.text


async def wait_for(receiver: Receiver, count: int) -> None:
    with trio.fail_after(20):
        while len(receiver.accepted) < count:
            await trio.sleep(0.01)


async def test_every_kind_of_exchange(tmp_path: Path, shared_dir: Path, schemas: SchemaSet) -> None:
    receiver = Receiver()
    async with trio.open_nursery() as nursery:
        port = await nursery.start(receiver.serve)
        key_dirs = [tmp_path / "pki"]
        async with running_gateway(config_with_receiver(tmp_path, port), key_dirs) as gw:
            # CV 1: I99 now, the signed response later at the Receive Response URL.
            cv1 = (
                shared_dir / REQUESTS / "ECS17b_4.1.1_SINGLE_SUCCESS_REQUEST_DUIS.XML"
            ).read_bytes()
            counter = next_counter()
            ack = await gw.send(cv1, counter=counter)
            assert response_code(ack.content) == "I99"
            await wait_for(receiver, 1)
            delivered = check_signed(receiver.accepted[0].body, tmp_path, schemas)
            assert request_id_of(delivered) == f"{SUPPLIER}:00-DB-12-34-56-78-90-A0:{counter}"
            assert response_code(receiver.accepted[0].body) == "I0"
            assert delivered.find(".//{*}GBCSPayload") is not None

            # CV 2: the command for local delivery on the same exchange (serviceD).
            cv2 = (shared_dir / REQUESTS / "ECS17b_4.1.1_REQUEST_DUIS.XML").read_bytes()
            sync = await gw.send(cv2)
            local = check_signed(sync.content, tmp_path, schemas)
            assert response_code(sync.content) == "I0"
            assert local.find(".//{*}LocalCommand/{*}GBCSPayload") is not None

            # CV 8: DCC-only, answered from the inventory.
            cv8 = (shared_dir / REQUESTS / "8.2_READ_INVENTORY_REQUEST_DUIS.XML").read_bytes()
            inventory = await gw.send(cv8)
            assert (
                check_signed(inventory.content, tmp_path, schemas).find(".//{*}DSPInventory")
                is not None
            )

            # CV 4 -> 5: Pre-Command, signed by the User's role key, correlated.
            cv4 = (shared_dir / REQUESTS / "ECS44_7.3_SUCCESS_REQUEST_DUIS.XML").read_bytes()
            counter = next_counter()
            pre = await gw.send(cv4, counter=counter)
            pre_root = check_signed(pre.content, tmp_path, schemas)
            payload = pre_root.find(".//{*}PreCommand/{*}GBCSPayload")
            assert payload is not None and payload.text
            _, role_key = find_signing_key(key_dirs, SUPPLIER, "02")
            signed_gbcs = sign_pre_command(base64.b64decode(payload.text), role_key)
            cv5 = signed_pre_command_request(cv4, signed_gbcs)
            ack5 = await gw.send(cv5, counter=counter)
            assert response_code(ack5.content) == "I99", ack5.text
            await wait_for(receiver, 2)
            second = check_signed(receiver.accepted[1].body, tmp_path, schemas)
            assert request_id_of(second).endswith(f":{counter}")

            # A second SignedPreCommand on the same RequestID is a replay.
            again = await gw.send(cv5, counter=counter)
            assert response_code(again.content) == "E1"
            # A tampered one (a byte of the GBCS changed) does not correlate.
            counter = next_counter()
            pre = await gw.send(cv4, counter=counter)
            payload = etree.fromstring(pre.content).find(".//{*}PreCommand/{*}GBCSPayload")
            assert payload is not None and payload.text
            tampered = bytearray(sign_pre_command(base64.b64decode(payload.text), role_key))
            tampered[30] ^= 0x01
            bad = await gw.send(signed_pre_command_request(cv4, bytes(tampered)), counter=counter)
            assert response_code(bad.content) == "E12"
            # One attempt per Pre-Command: even the right signature is now too late.
            good = sign_pre_command(base64.b64decode(payload.text), role_key)
            late = await gw.send(signed_pre_command_request(cv4, good), counter=counter)
            assert response_code(late.content) == "E1"
            # Correlated bytes, but signed with a key that is not the User's role key.
            counter = next_counter()
            pre = await gw.send(cv4, counter=counter)
            payload = etree.fromstring(pre.content).find(".//{*}PreCommand/{*}GBCSPayload")
            assert payload is not None and payload.text
            stranger = ec.generate_private_key(ec.SECP256R1())
            forged = sign_pre_command(base64.b64decode(payload.text), stranger)
            forged_ack = await gw.send(signed_pre_command_request(cv4, forged), counter=counter)
            assert response_code(forged_ack.content) == "E12"
        nursery.cancel_scope.cancel()


def signed_pre_command_request(cv4: bytes, signed_gbcs: bytes) -> bytes:
    """The User's CV 5: same RequestID, the signed GBCS in a SignedPreCommand body."""
    text = cv4.decode()
    text = text.replace(
        "<sr:CommandVariant>4</sr:CommandVariant>", "<sr:CommandVariant>5</sr:CommandVariant>"
    )
    body = (
        "<sr:Body><sr:SignedPreCommand><sr:GBCSPayload>"
        + base64.b64encode(signed_gbcs).decode()
        + "</sr:GBCSPayload></sr:SignedPreCommand></sr:Body>"
    )
    return re.sub(r"<sr:Body>.*</sr:Body>", body, text, flags=re.S).encode()


async def test_unserved_version_gets_a_version_mismatch_alert(
    tmp_path: Path, shared_dir: Path, schemas: SchemaSet
) -> None:
    receiver = Receiver()
    inventory = (shared_dir / REQUESTS / "8.2_READ_INVENTORY_REQUEST_DUIS.XML").read_bytes()
    future = inventory.replace(b'schemaVersion="5.4"', b'schemaVersion="6.0"')
    async with trio.open_nursery() as nursery:
        port = await nursery.start(receiver.serve)
        config = config_with_receiver(tmp_path, port)
        config = msgspec.structs.replace(
            config, duis=msgspec.structs.replace(config.duis, version_mismatch_alert_code="N25")
        )
        async with running_gateway(config, [tmp_path / "pki"]) as gw:
            unsigned = await gw.post("/api/v1/serviceD", future)  # not proven: no alert
            assert unsigned.status_code == 400
            r = await gw.send(future)
            assert r.status_code == 400 and "unsupported_version" in r.text
            await wait_for(receiver, 1)
            await trio.sleep(0.2)
            assert len(receiver.accepted) == 1
            alert = check_signed(receiver.accepted[0].body, tmp_path, schemas)
            assert alert.get("schemaVersion") == "5.4"
            assert alert.findtext(".//{*}DCCAlertCode") == "N25"
            assert alert.findtext(".//{*}ServiceRequestDUISVersion") == "6.0"
        nursery.cancel_scope.cancel()
