"""MMC output XML from GBCS responses, validated against each version's MMC schema."""

from __future__ import annotations

import base64
import contextlib
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from hypothesis import given, settings
from hypothesis import strategies as st
from lxml import etree

from parse_correlate.gbcs import Cra, GroupingHeader, build_message, parse_message
from parse_correlate.gbcs_bytes import GbcsError
from parse_correlate.gbcs_mac import KeyAgreement
from parse_correlate.handlers import handlers_for
from parse_correlate.integrity import Credentials, IntegrityError
from parse_correlate.mmc_output import (
    RA_NAMESPACE,
    SUPPORTED_VERSIONS,
    MmcOutputError,
    UnsupportedVersionError,
    parse_response,
)

RA = {"ra": RA_NAMESPACE}
RESPONSE_FOLDERS = ("4.1.1_ECS17b", "11.2_ECS52")


@pytest.fixture(scope="module")
def schemas(mmc_schemas: dict[str, etree.XMLSchema]) -> dict[str, etree.XMLSchema]:
    return mmc_schemas


@pytest.fixture(scope="module")
def responses(shared_dir: Path) -> dict[str, bytes]:
    rtds = shared_dir / "gbcs/rtds/RTDS-4.5.0"
    found = {
        path.name: bytes.fromhex(path.read_text())
        for folder in RESPONSE_FOLDERS
        for path in sorted((rtds / folder).glob("*_RESPONSE_GBCS.HEX"))
    }
    assert len(found) == 5
    return found


def _user_keys(shared_dir: Path, gbcs: bytes) -> Credentials:
    """The User's key agreement private key and the device's public key."""
    header = parse_message(gbcs).header
    store = shared_dir / "gbcs/rtds/keystore"
    own = serialization.load_pem_private_key(
        (store / f"{header.recipient.replace('-', '').lower()}-ka.key").read_bytes(), None
    )
    peer = x509.load_pem_x509_certificate(
        (store / f"{header.originator.replace('-', '').lower()}-ka.pem").read_bytes()
    ).public_key()
    assert isinstance(own, ec.EllipticCurvePrivateKey)
    assert isinstance(peer, ec.EllipticCurvePublicKey)
    return Credentials(user_keys=KeyAgreement(own, peer))


def _validated(schemas: dict[str, etree.XMLSchema], version: str, xml: bytes) -> etree._Element:
    document = etree.fromstring(xml)
    schema = schemas[version]
    assert schema.validate(document), f"{version}: {schema.error_log}\n{xml.decode()}"
    assert document.get("schemaVersion") == version
    return document


def _texts(document: etree._Element, path: str) -> list[str]:
    return [str(node.text) for node in document.iterfind(path, RA)]


@pytest.mark.parametrize("version", SUPPORTED_VERSIONS)
def test_ecs17b_and_ecs52_outputs_validate_in_every_version(
    schemas: dict[str, etree.XMLSchema],
    responses: dict[str, bytes],
    shared_dir: Path,
    version: str,
) -> None:
    for name, gbcs in responses.items():
        for keys in (None, _user_keys(shared_dir, gbcs)):
            document = _validated(schemas, version, parse_response(gbcs, version, keys))
            assert _texts(document, "ra:Header/ra:BusinessOriginatorID") == [
                "00-DB-12-34-56-78-90-A0"
            ], name


def test_ecs17b_registers_are_decrypted_with_the_users_key(
    schemas: dict[str, etree.XMLSchema], responses: dict[str, bytes], shared_dir: Path
) -> None:
    gbcs = responses["ECS17b_4.1.1_TWIN_SUCCESS_RESPONSE_GBCS.HEX"]
    xml = parse_response(gbcs, "5.4", _user_keys(shared_dir, gbcs))
    document = _validated(schemas, "5.4", xml)
    header = "ra:Header/ra:"
    assert _texts(document, header + "OriginatorCounter") == ["1200"]
    assert _texts(document, header + "GBCSHexadecimalMessageCode") == ["0027"]
    assert _texts(document, header + "ServiceReferenceVariant") == ["4.1.1"]
    assert _texts(document, header + "Timestamp") == ["2015-01-01T00:00:00Z"]
    rsp = "ra:Body/ra:ResponseMessage/ra:SMETSData/ra:ReadInstantaneousImportRegistersRsp"
    [element] = document.findall(rsp, RA)
    assert element.get("MessageSuccess") == "true"
    electricity = rsp + "/ra:Electricity/ra:"
    assert _texts(document, electricity + "ActiveImportRegister/ra:Value") == ["10"]
    assert _texts(document, electricity + "ReactiveImportRegister/ra:ReactiveEnergyUnit") == [
        "varh"
    ]
    assert _texts(document, electricity + "SecondaryActiveImportRegister/ra:Value") == ["10"]


def test_without_the_key_ecs17b_is_passed_on_encrypted(
    schemas: dict[str, etree.XMLSchema], responses: dict[str, bytes]
) -> None:
    gbcs = responses["ECS17b_4.1.1_SINGLE_SUCCESS_RESPONSE_GBCS.HEX"]
    document = _validated(schemas, "5.1", parse_response(gbcs, "5.1"))
    [data] = document.findall("ra:Body/ra:ResponseMessage/ra:GBCSData", RA)
    assert data.get("format") == "encrypted" and data.get("name") == "ECS17b"
    assert base64.b64decode(str(data.text)) == gbcs  # enough for a second pass


def test_device_errors_are_reported_with_their_dlms_result(
    schemas: dict[str, etree.XMLSchema], responses: dict[str, bytes]
) -> None:
    gbcs = responses["ECS17b_4.1.1_ERROR_RESPONSE_GBCS.HEX"]
    document = _validated(schemas, "5.0", parse_response(gbcs, "5.0"))
    body = "ra:Body/ra:ResponseMessage/"
    [rsp] = document.findall(body + "ra:SMETSData/ra:ReadInstantaneousImportRegistersRsp", RA)
    assert rsp.get("MessageSuccess") == "false"
    [status] = document.findall(body + "ra:DebugInfo/ra:COSEMDebug/ra:COSEMResponse", RA)
    assert status.get("ResponseCode") == "1" and status.get("Position") == "1"
    assert _texts(status, "ra:ActionResult") == ["hardware-fault"]


def test_ecs52_firmware_version(
    schemas: dict[str, etree.XMLSchema], responses: dict[str, bytes]
) -> None:
    gbcs = responses["ECS52_11.2_SUCCESS_RESPONSE_GBCS.HEX"]
    document = _validated(schemas, "5.3", parse_response(gbcs, "5.3"))
    path = "ra:Body/ra:ResponseMessage/ra:SMETSData/ra:ReadFirmwareVersionRsp/ra:FirmwareVersion"
    assert _texts(document, path) == ["0123ABCD"]


def test_dcc_boxed_responses_with_supplementary_party(
    schemas: dict[str, etree.XMLSchema], shared_dir: Path
) -> None:
    ns = {"sr": "http://www.dccinterface.co.uk/ServiceUserGateway"}
    for sample in sorted((shared_dir / "duis/samples/responses").glob("*.*")):
        response = etree.parse(str(sample))
        for payload in response.iterfind(".//sr:GBCSPayload", ns):
            gbcs = base64.b64decode(str(payload.text))
            document = _validated(schemas, "5.1", parse_response(gbcs, "5.1"))
            assert _texts(document, "ra:Header/ra:SupplementaryRemotePartyID") == [
                "90-B3-D5-1F-30-01-00-00"
            ]
            firmware = "ra:Body/ra:ResponseMessage/ra:SMETSData/ra:ReadFirmwareVersionRsp"
            assert len(_texts(document, firmware + "/ra:FirmwareVersion")) == 1


@pytest.mark.parametrize("version", ["5.0", "5.4"])
def test_every_rtds_response_and_alert_renders_valid_output(
    schemas: dict[str, etree.XMLSchema], shared_dir: Path, version: str
) -> None:
    failures = []
    for path in sorted((shared_dir / "gbcs/rtds/RTDS-4.5.0").glob("*/*.HEX")):
        if "_RESPONSE_" not in path.name and "_ALERT_" not in path.name:
            continue
        document = etree.fromstring(parse_response(bytes.fromhex(path.read_text()), version))
        if not schemas[version].validate(document):
            failures.append(f"{path.name}: {schemas[version].error_log}")
    assert not failures, "\n".join(failures)


def _response_with_clock_status(status: int) -> bytes:
    header = GroupingHeader(
        cra=Cra.RESPONSE,
        originator_counter=3,
        originator="00-DB-12-34-56-78-90-A0",
        recipient="90-B3-D5-1F-30-01-00-00",
        message_code=0x0059,
        # 2025-06-01 (a Sunday) 12:30:00.00, deviation unspecified, then the clock status
        date_time=bytes.fromhex("07E90601070C1E00008000") + bytes([status]),
    )
    payload = bytes.fromhex("DA2000000300000109040123ABCD010100")
    return build_message(header, payload)


def test_clock_status_only_where_the_schema_has_it(schemas: dict[str, etree.XMLSchema]) -> None:
    gbcs = _response_with_clock_status(0x02)
    new = _validated(schemas, "5.4", parse_response(gbcs, "5.4"))
    [stamp] = new.findall("ra:Header/ra:Timestamp", RA)
    assert stamp.text == "2025-06-01T12:30:00Z" and stamp.get("ClockStatus") == "unreliable"
    old = _validated(schemas, "5.0", parse_response(gbcs, "5.0"))
    [stamp] = old.findall("ra:Header/ra:Timestamp", RA)
    assert stamp.get("ClockStatus") is None


def test_refusals(responses: dict[str, bytes], shared_dir: Path) -> None:
    gbcs = responses["ECS52_11.2_SUCCESS_RESPONSE_GBCS.HEX"]
    with pytest.raises(UnsupportedVersionError):
        parse_response(gbcs, "5.2")
    with pytest.raises(UnsupportedVersionError):
        handlers_for("4.0")
    folder = shared_dir / "gbcs/rtds/RTDS-4.5.0/11.2_ECS52"
    command = bytes.fromhex((folder / "ECS52_11.2_SUCCESS_COMMAND_GBCS.HEX").read_text())
    with pytest.raises(MmcOutputError, match="command"):
        parse_response(command, "5.4")
    twin = responses["ECS17b_4.1.1_TWIN_SUCCESS_RESPONSE_GBCS.HEX"]
    wrong_keys = _user_keys(shared_dir, responses["ECS17b_4.1.1_SINGLE_SUCCESS_RESPONSE_GBCS.HEX"])
    # Another User's keys: the MAC, addressed to the twin's User, does not verify, so
    # nothing is decrypted or decoded.
    with pytest.raises(IntegrityError, match="MAC does not verify"):
        parse_response(twin, "5.4", wrong_keys)


@pytest.mark.parametrize("version", SUPPORTED_VERSIONS)
def test_handler_sets_render_their_own_version(
    schemas: dict[str, etree.XMLSchema], responses: dict[str, bytes], version: str
) -> None:
    handlers = handlers_for(version)
    assert handlers.version == version
    gbcs = responses["ECS52_11.2_SUCCESS_RESPONSE_GBCS.HEX"]
    _validated(schemas, version, handlers.parse_response(gbcs))


_MUTATION_BASES = [
    "ECS17b_4.1.1_SINGLE_SUCCESS_RESPONSE_GBCS.HEX",
    "ECS52_11.2_SUCCESS_RESPONSE_GBCS.HEX",
    "ECS52_11.2_ERROR_RESPONSE_GBCS.HEX",
]


@settings(deadline=None, max_examples=300)
@given(st.sampled_from(_MUTATION_BASES), st.integers(0, 200), st.integers(0, 255))
def test_mutated_responses_give_output_or_a_gbcs_error(
    responses: dict[str, bytes], name: str, position: int, value: int
) -> None:
    gbcs = bytearray(responses[name])
    gbcs[position % len(gbcs)] = value
    with contextlib.suppress(GbcsError):  # a malformed payload is a clear refusal
        parse_response(bytes(gbcs), "5.4")
