"""Response builders: valid under every version's XSD, canonical as written, signable as is."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from lxml import etree

from gateway.core.ingest import SchemaSet
from gateway.core.signature import parse_signature, verify_signature
from gateway.core.signing import sign_canonical_document, sign_document
from gateway.stores.operator_files import load_schemas
from mmc import responses
from mmc.catalogue import load_catalogue
from mmc.identifiers import parse_request_id

VERSIONS = ("5.0", "5.1", "5.3", "5.4")
NOW = dt.datetime(2026, 11, 28, 21, 0, 1, 234567, tzinfo=dt.UTC)
RID = parse_request_id("90-B3-D5-1F-30-01-00-00:00-DB-12-34-56-78-90-A0:1000")
DCC_RID = parse_request_id("90-B3-D5-1F-30-01-00-00:90-B3-D5-1F-30-00-00-02:7")


def documents(version: str) -> dict[str, bytes]:
    c = load_catalogue(version)
    device = responses.InventoryDevice(
        device_id="00-DB-12-34-56-78-90-A0",
        device_type="ESME",
        device_status="Commissioned",
        manufacturer="1234",
        model="ABCD",
        firmware_version="0001",
        import_mpxn="1234567890123",
    )
    return {
        "ack I99": responses.acknowledgement(c, RID, "I99", "4.1", "4.1.1", NOW),
        "ack E65 mapped": responses.acknowledgement(c, RID, "E65", "4.1", "4.1.1", NOW),
        "gbcs": responses.service_response(
            c, RID, "I0", "4.1", "4.1.1", NOW, content=responses.gbcs_payload(b"\xdf\x09ab")
        ),
        "precommand": responses.service_response(
            c, RID, "I0", "7.3", "7.3", NOW, content=responses.pre_command("4.3", b"\xdf\x09")
        ),
        "inventory": responses.service_response(
            c, DCC_RID, "I0", "8.2", "8.2", NOW, content=responses.inventory([device])
        ),
        "firmware warning": responses.service_response(
            c,
            DCC_RID,
            "I0",
            "11.1",
            "11.1",
            NOW,
            content=responses.firmware_warning(
                {"InvalidDeviceIDList": ["00-DB-12-34-56-78-90-AF"]}
            ),
        ),
        "AD1": responses.dcc_alert(
            c,
            "AD1",
            responses.quarantined_request("ADUserThresholdBreach", RID, 42),
            NOW,
            request_id=RID,
        ),
    }


@pytest.fixture(scope="module")
def schemas(shared_dir: Path) -> SchemaSet:
    return load_schemas(
        shared_dir / "duis" / "xsd", {v: load_catalogue(v).xsd_file for v in VERSIONS}
    )


@pytest.mark.parametrize("version", VERSIONS)
def test_builders_are_schema_valid_and_canonical(version: str, schemas: SchemaSet) -> None:
    for name, document in documents(version).items():
        root = etree.fromstring(document)
        assert schemas.error(version, root) is None, (version, name)
        assert etree.tostring(root, method="c14n") == document, (version, name)


def test_a_code_the_version_lacks_is_mapped() -> None:
    old = etree.fromstring(documents("5.0")["ack E65 mapped"])
    new = etree.fromstring(documents("5.4")["ack E65 mapped"])
    assert old.findtext("{*}Header/{*}ResponseCode") == "E1"
    assert new.findtext("{*}Header/{*}ResponseCode") == "E65"


def test_fast_signing_equals_the_general_path() -> None:
    """sign_canonical_document skips the parse; both give the same digest and verify."""
    key = ec.generate_private_key(ec.SECP256R1())
    for document in documents("5.4").values():
        fast = sign_canonical_document(document, key, "CN=Z1,OU=07", 5)
        general = sign_document(document, key, "CN=Z1,OU=07", 5)
        fast_root, general_root = etree.fromstring(fast), etree.fromstring(general)
        assert fast_root.findtext(".//{*}DigestValue") == general_root.findtext(".//{*}DigestValue")
        verify_signature(fast_root, parse_signature(fast_root), key.public_key())


def test_timestamp_has_milliseconds_and_z() -> None:
    assert responses.timestamp(NOW) == "2026-11-28T21:00:01.234Z"
