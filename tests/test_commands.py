"""Service Request -> GBCS command, checked byte for byte against the RTDS vectors."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from mmc.identifiers import RequestId
from parse_correlate.commands import (
    SIMULATED_MESSAGE_CODE,
    BuiltCommand,
    CommandError,
    CommandFacts,
    DeviceType,
    build_command,
    seal_signed_pre_command,
)
from parse_correlate.correlate import correlate, sign_pre_command, verify_pre_command_signature
from parse_correlate.gbcs import BlockKind, Cra, parse_message, verify_mac
from parse_correlate.gbcs_mac import KeyAgreement

NOW = dt.datetime(2025, 6, 1, 12, 0, tzinfo=dt.UTC)
ACB = "90b3d51f30000002"
ESME = DeviceType.ESME
# SRV -> the RTDS folder of its real (ESME) use case.
REAL_SRVS = {"4.1.1": "4.1.1_ECS17b", "11.2": "11.2_ECS52"}


@pytest.fixture(scope="module")
def keystore(shared_dir: Path) -> Path:
    return shared_dir / "gbcs/rtds/keystore"


def _acb_keys(keystore: Path, device: str) -> KeyAgreement:
    own = serialization.load_pem_private_key((keystore / f"{ACB}-ka.key").read_bytes(), None)
    cert = x509.load_pem_x509_certificate(
        (keystore / f"{device.replace('-', '').lower()}-ka.pem").read_bytes()
    )
    peer = cert.public_key()
    assert isinstance(own, ec.EllipticCurvePrivateKey)
    assert isinstance(peer, ec.EllipticCurvePublicKey)
    return KeyAgreement(own, peer)


def _vectors(shared_dir: Path, srv: str) -> list[Path]:
    folder = shared_dir / "gbcs/rtds/RTDS-4.5.0" / REAL_SRVS[srv]
    files = sorted(folder.glob("*_COMMAND_GBCS.HEX"))
    assert files
    return files


def _command_for_vector(vector: bytes, srv: str, keys: KeyAgreement | None) -> BuiltCommand:
    """Build from the same header inputs the vector carries: User, device, counter."""
    header = parse_message(vector).header
    request_id = RequestId(header.originator, header.recipient, header.originator_counter)
    return build_command(
        srv,
        request_id,
        CommandFacts(device_type=ESME),
        originator_counter=header.originator_counter,
        now=NOW,
        mac_keys=keys,
    )


@pytest.mark.parametrize("srv", sorted(REAL_SRVS))
def test_real_commands_equal_the_rtds_vectors(shared_dir: Path, keystore: Path, srv: str) -> None:
    for path in _vectors(shared_dir, srv):
        vector = bytes.fromhex(path.read_text())
        keys = _acb_keys(keystore, parse_message(vector).header.recipient)
        command = _command_for_vector(vector, srv, keys)
        assert command.gbcs == vector, path.name
        assert not command.simulated and not command.mac_placeholder and not command.pre_command
        assert command.use_case == REAL_SRVS[srv].split("_")[1]


@pytest.mark.parametrize("srv", sorted(REAL_SRVS))
def test_without_the_acb_key_only_the_mac_differs(shared_dir: Path, srv: str) -> None:
    for path in _vectors(shared_dir, srv):
        vector = bytes.fromhex(path.read_text())
        command = _command_for_vector(vector, srv, None)
        assert command.mac_placeholder
        assert command.gbcs[:-12] == vector[:-12]
        assert command.gbcs[-12:] == bytes(12)


def test_invoke_id_carries_the_low_24_bits_of_the_counter() -> None:
    request_id = RequestId("90-B3-D5-1F-30-01-00-00", "00-DB-12-34-56-78-90-A0", 1)
    counter = 0x0182_AC7B_5A07  # a DCC Boxed counter (milliseconds since 1970)
    command = build_command(
        "11.2", request_id, CommandFacts(ESME), originator_counter=counter, now=NOW
    )
    message = parse_message(command.gbcs)
    assert message.header.originator_counter == counter
    assert message.payload[:5] == bytes.fromhex("D9207B5A07")


def test_other_srvs_are_clearly_simulated() -> None:
    request_id = RequestId("90-B3-D5-1F-30-01-00-00", "00-DB-12-34-56-78-90-A1", 5)
    gas = build_command(
        "4.1.1", request_id, CommandFacts(DeviceType.GSME), originator_counter=5, now=NOW
    )
    assert gas.simulated and gas.use_case == "GCS13a" and gas.message_code == 0x0074
    assert parse_message(gas.gbcs).payload == b"SIMULATED 4.1.1 GSME"
    unknown = build_command("6.2.1", request_id, CommandFacts(ESME), originator_counter=6, now=NOW)
    assert unknown.simulated and unknown.use_case is None
    assert unknown.message_code == SIMULATED_MESSAGE_CODE


def test_future_dated_requests_are_held_until_their_execution_time() -> None:
    request_id = RequestId("90-B3-D5-1F-30-01-00-00", "00-DB-12-34-56-78-90-A0", 9)
    later = NOW + dt.timedelta(hours=2)
    held = build_command(
        "4.1.1", request_id, CommandFacts(ESME, later), originator_counter=9, now=NOW
    )
    assert held.not_before == later
    due = build_command("4.1.1", request_id, CommandFacts(ESME, NOW), originator_counter=9, now=NOW)
    assert due.not_before is None
    # The DSP pattern sends an immediate command: the execution time is not in it.
    assert held.gbcs == due.gbcs


def test_critical_srvs_yield_a_pre_command_to_sign_and_seal(keystore: Path) -> None:
    user, device = "90-B3-D5-1F-30-01-00-00", "00-DB-12-34-56-78-90-A0"
    request_id = RequestId(user, device, 1234)
    pre = build_command(
        "1.6", request_id, CommandFacts(ESME), originator_counter=1234, now=NOW, critical=True
    )
    assert pre.pre_command and not pre.mac_placeholder
    parsed = parse_message(pre.gbcs)
    assert parsed.kind is BlockKind.GENERAL_SIGNING and parsed.signature is None
    assert parsed.header.cra is Cra.COMMAND

    signing_key = serialization.load_pem_private_key(
        (keystore / "90b3d51f30010000-ds.key").read_bytes(), None
    )
    assert isinstance(signing_key, ec.EllipticCurvePrivateKey)
    signed = sign_pre_command(pre.gbcs, signing_key)
    correlate(pre.gbcs, signed)
    verify_pre_command_signature(signed, signing_key.public_key())

    keys = _acb_keys(keystore, device)
    sealed = parse_message(seal_signed_pre_command(signed, keys))
    assert sealed.kind is BlockKind.GENERAL_CIPHERING and sealed.block == signed
    assert verify_mac(sealed, keys)
    with pytest.raises(CommandError):
        seal_signed_pre_command(pre.gbcs, keys)


@pytest.mark.parametrize("srv", ["4.1.1", "11.2", "1.6"])
@pytest.mark.parametrize("counter", [-1, 1 << 64])
def test_counter_out_of_range_is_the_callers_error(srv: str, counter: int) -> None:
    request_id = RequestId("90-B3-D5-1F-30-01-00-00", "00-DB-12-34-56-78-90-A0", 1)
    with pytest.raises(CommandError, match="uint64"):
        build_command(srv, request_id, CommandFacts(ESME), originator_counter=counter, now=NOW)
