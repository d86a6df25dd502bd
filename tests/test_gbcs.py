"""GBCS framing against the DCC's Reference Test Data Set 4.5.0 and hostile bytes."""

from __future__ import annotations

import functools
import re
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, utils
from hypothesis import given, settings
from hypothesis import strategies as st

from parse_correlate.gbcs import (
    BlockKind,
    Cra,
    GbcsMessage,
    GroupingHeader,
    build_message,
    decode_dlms_datetime,
    parse_message,
    verify_mac,
)
from parse_correlate.gbcs_bytes import GbcsError
from parse_correlate.gbcs_codes import MESSAGE_CODES, message_code_name
from parse_correlate.gbcs_mac import KeyAgreement

_KIND_RE = re.compile(r"_(PRECOMMAND|COMMAND|RESPONSE|ALERT)_")
_CRA_BY_KIND = {
    "COMMAND": Cra.COMMAND,
    "PRECOMMAND": Cra.COMMAND,
    "RESPONSE": Cra.RESPONSE,
    "ALERT": Cra.ALERT,
}
# RTDS labels that qualify one GBCS use case by scenario; the GBCS name is the stem.
_SCENARIO_SUFFIX_RE = re.compile(
    r"(NonCritical|Critical|Activate|Deactivate|Reset|Add|Remove|Commission|Handover"
    r"|MAC|Signature)$"
)
# Alerts reporting a use case's own (future-dated) outcome carry the alert's message code.
_OUTCOME_ALERTS = (
    (re.compile(r"CS06$"), "FutureDatedFirmwareActivationAlert"),
    (re.compile(r"CS02b"), "FutureDatedUpdateSecurityCredentialsAlert"),
    (re.compile(r"CS02g"), "FutureDatedUpdateLoadControllerCredentialsAlert"),
    (re.compile(r"DBCH04$"), "DBCH09"),
    (re.compile(r"ECS"), "FutureDatedDLMSAlert"),
    (re.compile(r"GCS"), "FutureDatedGBZAlert"),
)
# The RTDS's CS04B error scenario is built with CS04AC's message code.
_KNOWN_RTDS_QUIRKS = {"CS04B_8.8.2_ERROR_COMMAND_GBCS.HEX", "CS04B_8.8.2_ERROR_RESPONSE_GBCS.HEX"}
ACB = "90-B3-D5-1F-30-00-00-02"  # the DCC's Access Control Broker in the RTDS keystore


@pytest.fixture(scope="module")
def rtds(shared_dir: Path) -> list[tuple[Path, bytes]]:
    files = sorted((shared_dir / "gbcs/rtds/RTDS-4.5.0").glob("*/*.HEX"))
    assert files, "no RTDS vectors found"
    return [(path, bytes.fromhex(path.read_text())) for path in files]


@pytest.fixture(scope="module")
def keystore(shared_dir: Path) -> Path:
    return shared_dir / "gbcs/rtds/keystore"


@functools.cache
def _private_key(path: Path) -> ec.EllipticCurvePrivateKey | None:
    if not path.exists():
        return None
    key = serialization.load_pem_private_key(path.read_bytes(), None)
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    return key


@functools.cache
def _public_key(path: Path) -> ec.EllipticCurvePublicKey | None:
    if not path.exists():
        return None
    key = x509.load_pem_x509_certificate(path.read_bytes()).public_key()
    assert isinstance(key, ec.EllipticCurvePublicKey)
    return key


def _key_file(keystore: Path, eui: str, usage: str, suffix: str) -> Path:
    return keystore / f"{eui.replace('-', '').lower()}-{usage}.{suffix}"


def test_every_rtds_vector_parses(rtds: list[tuple[Path, bytes]]) -> None:
    failures = []
    parsed = 0
    for path, data in rtds:
        try:
            parse_message(data)
        except GbcsError as exc:
            failures.append(f"{path.parent.name}/{path.name}: {exc}")
        else:
            parsed += 1
    assert not failures, "\n".join(failures)
    assert parsed == len(rtds)


def _expected_codes(folder: str, kind: str, alert_only: bool) -> set[int]:
    use_case = folder.split("_", 1)[1]
    # A folder of alerts alone is named for the alert; otherwise an alert reports the
    # outcome of the folder's (future-dated) command.
    if kind != "ALERT" or alert_only:
        return {MESSAGE_CODES[_SCENARIO_SUFFIX_RE.sub("", use_case)]}
    return {MESSAGE_CODES[name] for pattern, name in _OUTCOME_ALERTS if pattern.search(use_case)}


def _kind(path: Path) -> str:
    match = _KIND_RE.search(path.name)
    assert match, f"file name without a kind: {path.name}"
    return match.group(1)


def test_headers_match_file_kind_and_use_case(rtds: list[tuple[Path, bytes]]) -> None:
    kinds_by_folder: dict[str, set[str]] = {}
    for path, _ in rtds:
        kinds_by_folder.setdefault(path.parent.name, set()).add(_kind(path))
    failures = []
    for path, data in rtds:
        kind = _kind(path)
        message = parse_message(data)
        if message.header.cra is not _CRA_BY_KIND[kind]:
            failures.append(f"{path.name}: CRA {message.header.cra.name}, file says {kind}")
        folder = path.parent.name
        expected = _expected_codes(folder, kind, kinds_by_folder[folder] == {"ALERT"})
        if message.header.message_code not in expected and path.name not in _KNOWN_RTDS_QUIRKS:
            failures.append(
                f"{path.name}: message code {message.header.message_code:#06x},"
                f" expected {sorted(hex(code) for code in expected)}"
            )
    assert not failures, "\n".join(failures)


def test_pre_commands_are_unsigned_signing_blocks(rtds: list[tuple[Path, bytes]]) -> None:
    pre_commands = [parse_message(data) for path, data in rtds if "_PRECOMMAND_" in path.name]
    assert pre_commands
    for message in pre_commands:
        assert message.kind is BlockKind.GENERAL_SIGNING
        assert message.signature is None and message.mac is None


def _rebuild(message: GbcsMessage) -> bytes:
    return build_message(
        message.header,
        message.payload,
        signature=message.signature,
        ciphering=message.kind is BlockKind.GENERAL_CIPHERING,
        invocation_counter=message.invocation_counter,
    )


def test_build_round_trips_every_vector(rtds: list[tuple[Path, bytes]]) -> None:
    failures = []
    for path, data in rtds:
        message = parse_message(data)
        rebuilt = _rebuild(message)
        # Without keys the MAC is a zero placeholder; MACs are checked with keys below.
        if message.mac is not None:
            data = data[: -len(message.mac)]
            rebuilt = rebuilt[: -len(message.mac)]
        if rebuilt != data:
            failures.append(path.name)
    assert not failures, "\n".join(failures)


def test_command_macs_are_the_access_control_brokers(
    rtds: list[tuple[Path, bytes]], keystore: Path
) -> None:
    acb_key = _private_key(_key_file(keystore, ACB, "ka", "key"))
    assert acb_key is not None
    checked, failures = 0, []
    for path, data in rtds:
        message = parse_message(data)
        header = message.header
        # Commands from a device (a PPMID's) are MACed with device keys the RTDS withholds.
        if message.mac is None or header.cra is not Cra.COMMAND:
            continue
        if header.originator.startswith("00-DB"):
            continue
        device_key = _public_key(_key_file(keystore, header.recipient, "ka", "pem"))
        assert device_key is not None, f"no key agreement certificate for {header.recipient}"
        keys = KeyAgreement(acb_key, device_key)
        rebuilt = build_message(header, message.payload, signature=message.signature, mac_keys=keys)
        if not verify_mac(message, keys) or rebuilt != data:
            failures.append(path.name)
        checked += 1
    assert not failures, "\n".join(failures)
    assert checked == 495


def test_device_macs_verify_with_the_recipients_key(
    rtds: list[tuple[Path, bytes]], keystore: Path
) -> None:
    checked, failures = 0, []
    for path, data in rtds:
        message = parse_message(data)
        header = message.header
        if message.mac is None or header.cra is Cra.COMMAND:
            continue
        own = _private_key(_key_file(keystore, header.recipient, "ka", "key"))
        peer = _public_key(_key_file(keystore, header.originator, "ka", "pem"))
        if own is None or peer is None:
            continue  # device-to-device traffic: the RTDS publishes no device private keys
        if not verify_mac(message, KeyAgreement(own, peer)):
            failures.append(path.name)
        checked += 1
    assert not failures, "\n".join(failures)
    assert checked >= 300


def test_signatures_cover_the_block_minus_its_tag(
    rtds: list[tuple[Path, bytes]], keystore: Path
) -> None:
    checked, failures = 0, []
    for path, data in rtds:
        message = parse_message(data)
        if not message.signature:
            continue
        key = _public_key(_key_file(keystore, message.header.originator, "ds", "pem"))
        assert key is not None, f"no signing certificate for {message.header.originator}"
        r = int.from_bytes(message.signature[:32], "big")
        s = int.from_bytes(message.signature[32:], "big")
        try:
            key.verify(
                utils.encode_dss_signature(r, s), message.signed_data, ec.ECDSA(hashes.SHA256())
            )
        except Exception:
            failures.append(path.name)
        checked += 1
    assert not failures, "\n".join(failures)
    assert checked == 472


def test_header_fields_of_an_ecs17b_response(rtds: list[tuple[Path, bytes]]) -> None:
    [data] = [d for p, d in rtds if p.name == "ECS17b_4.1.1_SINGLE_SUCCESS_RESPONSE_GBCS.HEX"]
    message = parse_message(data)
    assert message.kind is BlockKind.GENERAL_CIPHERING
    assert message.header.cra is Cra.RESPONSE
    assert message.header.originator_counter == 1000
    assert message.header.originator == "00-DB-12-34-56-78-90-A0"
    assert message.header.recipient == "90-B3-D5-1F-30-01-00-00"
    assert message.header.message_code == 0x0027
    assert message_code_name(0x0027) == "ECS17b"
    assert message.header.date_time is not None
    moment = decode_dlms_datetime(message.header.date_time)
    assert moment is not None and moment.isoformat() == "2015-01-01T00:00:00+00:00"
    assert message.signature == b""
    assert message.mac is not None and len(message.mac) == 12
    assert message.payload[0] == 0xDA  # DLMS access-response


def test_supplementary_remote_party_fields() -> None:
    # A DCC Boxed response to a command the DCC sent for a User (DUIS sample, base64).
    import base64

    data = base64.b64decode(
        "3QAAAAAAAFURAAAAAN8JAgAAAYKse1oHCIhzhFcAL5YeCJCz1R8wAAACABIAWZCz1R8wAQAAAAABgqx7WN8R"
        "2iB7WgcAAAEJBAwjAAABAQAAnbt9CWxcgwworYef"
    )
    header = parse_message(data).header
    assert header.recipient == "90-B3-D5-1F-30-00-00-02"
    assert header.supplementary_remote_party == "90-B3-D5-1F-30-01-00-00"
    assert header.supplementary_remote_party_counter == 0x01_82AC_7B58_DF
    assert header.supplementary_originator_counter is None
    assert header.supplementary_certificate is None


def _valid_block(signature: bytes | None = b"", **changes: object) -> bytes:
    fields: dict[str, object] = {
        "cra": Cra.COMMAND,
        "originator_counter": 7,
        "originator": "90-B3-D5-1F-30-01-00-00",
        "recipient": "00-DB-12-34-56-78-90-A0",
        "message_code": 0x0059,
    }
    fields.update(changes)
    header = GroupingHeader(**fields)  # type: ignore[arg-type]
    return build_message(header, b"\x01\x02", signature=signature, ciphering=False)


@pytest.mark.parametrize(
    ("data", "fragment"),
    [
        (b"", "empty"),
        (b"\x42", "unknown GBCS block tag"),
        (b"\xe0\x00", "general block transfer"),
        (b"\xdf\x09\x01", "truncated"),
        (b"\xdd\x01" + bytes(5) + b"\x00", "must be empty"),
        (b"\xdd" + bytes(6) + b"\x05\x11\x00", "ciphered content length"),
        (b"\xdd" + bytes(6) + b"\x11\x31" + bytes(16), "security control"),
        (_valid_block() + b"\x00\x00", "unexpected bytes after the signature"),
        (_valid_block(signature=None) + b"\x05" + bytes(5), "signature must be 0 or 64"),
        (b"\xdf\x81\x09", "not minimally encoded"),
        (b"\xdf\x84\x00\x00\x00\x09", "unsupported form"),
        (bytes.fromhex("df0904") + bytes(8), "CRA flag 4"),
        (bytes.fromhex("df090100000000000000010807"), "originator system title"),
    ],
)
def test_malformed_messages_are_refused_clearly(data: bytes, fragment: str) -> None:
    with pytest.raises(GbcsError, match=fragment):
        parse_message(data)


def test_other_information_length_must_match_a_layout() -> None:
    block = bytearray(_valid_block())
    other_at = 1 + 10 + 9 + 9 + 1  # tag, transaction-id, two system titles, empty date-time
    assert block[other_at] == 2
    block[other_at : other_at + 3] = b"\x03\x00\x59\x00"
    with pytest.raises(GbcsError, match="other-information of 3 bytes"):
        parse_message(bytes(block))


def test_the_mac_header_needs_a_signature_field() -> None:
    header = parse_message(_valid_block()).header
    with pytest.raises(GbcsError):
        build_message(header, b"", signature=None)


def test_dlms_datetime_unspecified_fields() -> None:
    assert decode_dlms_datetime(bytes.fromhex("07DF0101FF000000008000FF")) is not None
    assert decode_dlms_datetime(bytes.fromhex("FFFFFFFFFFFFFFFFFF8000FF")) is None
    with pytest.raises(GbcsError, match="invalid DLMS date-time"):
        decode_dlms_datetime(bytes.fromhex("07DF0D01FF000000008000FF"))


def _check_parse_or_refuse(data: bytes) -> None:
    try:
        message = parse_message(data)
    except GbcsError:
        return
    # Whatever parses re-encodes to the same bytes (minimal lengths make framing unique).
    rebuilt = _rebuild(message)
    if message.mac is not None:
        assert rebuilt[:-12] == data[:-12]
    else:
        assert rebuilt == data


@settings(deadline=None, max_examples=300)
@given(st.binary(max_size=300))
def test_random_bytes_parse_or_raise_gbcs_error(data: bytes) -> None:
    _check_parse_or_refuse(data)


@settings(deadline=None, max_examples=300)
@given(st.sampled_from([0xDD, 0xDF]), st.binary(max_size=200))
def test_random_bytes_behind_a_valid_tag(tag: int, rest: bytes) -> None:
    _check_parse_or_refuse(bytes([tag]) + rest)


@settings(deadline=None, max_examples=500)
@given(
    st.integers(0, 1 << 16),
    st.lists(st.tuples(st.integers(0, 4000), st.integers(0, 255)), max_size=4),
    st.integers(0, 4000),
    st.binary(max_size=8),
)
def test_mutated_rtds_vectors_parse_or_raise_gbcs_error(
    rtds: list[tuple[Path, bytes]],
    which: int,
    flips: list[tuple[int, int]],
    cut: int,
    extra: bytes,
) -> None:
    data = bytearray(rtds[which % len(rtds)][1])
    for position, value in flips:
        if data:
            data[position % len(data)] = value
    mutated = bytes(data[: max(cut, 1)]) if cut < len(data) else bytes(data) + extra
    _check_parse_or_refuse(mutated)
