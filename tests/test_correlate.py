"""Pre-Command correlation and User signatures, on the RTDS critical command pairs."""

from __future__ import annotations

import functools
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from hypothesis import given, settings
from hypothesis import strategies as st

from parse_correlate.correlate import (
    CorrelationError,
    Reason,
    correlate,
    sign_pre_command,
    verify_pre_command_signature,
)
from parse_correlate.gbcs import parse_message
from parse_correlate.handlers import handlers_for
from parse_correlate.mmc_output import SUPPORTED_VERSIONS

Pair = tuple[str, bytes, bytes]  # name, Pre-Command, Signed Pre-Command (no MAC header)


@pytest.fixture(scope="module")
def pairs(shared_dir: Path) -> list[Pair]:
    found = []
    for pre_path in sorted((shared_dir / "gbcs/rtds/RTDS-4.5.0").glob("*/*_PRECOMMAND_GBCS.HEX")):
        command_path = pre_path.with_name(pre_path.name.replace("_PRECOMMAND_", "_COMMAND_"))
        command = parse_message(bytes.fromhex(command_path.read_text()))
        # The device-bound command wraps the signed block in the DCC's MAC header.
        found.append((pre_path.name, bytes.fromhex(pre_path.read_text()), command.block))
    assert len(found) == 178
    return found


@pytest.fixture(scope="module")
def keystore(shared_dir: Path) -> Path:
    return shared_dir / "gbcs/rtds/keystore"


@functools.cache
def _signing_key(path: Path) -> ec.EllipticCurvePublicKey:
    key = x509.load_pem_x509_certificate(path.read_bytes()).public_key()
    assert isinstance(key, ec.EllipticCurvePublicKey)
    return key


def _user_key(keystore: Path, signed: bytes) -> ec.EllipticCurvePublicKey:
    originator = parse_message(signed).header.originator
    return _signing_key(keystore / f"{originator.replace('-', '').lower()}-ds.pem")


def test_every_rtds_pair_correlates_and_verifies(pairs: list[Pair], keystore: Path) -> None:
    failures = []
    for name, pre, signed in pairs:
        try:
            result = correlate(pre, signed)
            verify_pre_command_signature(signed, _user_key(keystore, signed))
        except CorrelationError as exc:
            failures.append(f"{name}: {exc}")
        else:
            assert result.signature == signed[-64:]
            assert result.originator_counter == parse_message(pre).header.originator_counter
    assert not failures, "\n".join(failures)


def test_a_pre_command_ending_in_a_zero_signature_length_correlates(pairs: list[Pair]) -> None:
    _, pre, signed = pairs[0]
    correlate(pre + b"\x00", signed)


def _flip(data: bytes, index: int) -> bytes:
    changed = bytearray(data)
    changed[index] ^= 0x01
    return bytes(changed)


def test_a_changed_payload_is_a_mismatch(pairs: list[Pair]) -> None:
    _, pre, signed = pairs[0]
    payload_byte = len(pre) - 1
    with pytest.raises(CorrelationError) as caught:
        correlate(pre, _flip(signed, payload_byte))
    assert caught.value.reason is Reason.PAYLOAD_MISMATCH
    assert "byte" in caught.value.detail


def test_a_changed_header_is_a_mismatch(pairs: list[Pair]) -> None:
    _, pre, signed = pairs[0]
    counter_byte = 10  # last byte of the originator counter
    with pytest.raises(CorrelationError) as caught:
        correlate(pre, _flip(signed, counter_byte))
    assert caught.value.reason is Reason.PAYLOAD_MISMATCH


def test_a_changed_signature_is_invalid(pairs: list[Pair], keystore: Path) -> None:
    _, _, signed = pairs[0]
    tampered = _flip(signed, len(signed) - 1)
    with pytest.raises(CorrelationError) as caught:
        verify_pre_command_signature(tampered, _user_key(keystore, signed))
    assert caught.value.reason is Reason.SIGNATURE_INVALID


def test_another_users_key_is_invalid(pairs: list[Pair], keystore: Path) -> None:
    _, _, signed = pairs[0]
    other = _signing_key(keystore / "90b3d51f30030000-ds.pem")
    with pytest.raises(CorrelationError) as caught:
        verify_pre_command_signature(signed, other)
    assert caught.value.reason is Reason.SIGNATURE_INVALID


@pytest.mark.parametrize(
    "mangle",
    [
        lambda pre, signed: (pre, pre),  # not signed
        lambda pre, signed: (pre, signed + b"\x00"),  # trailing garbage
        lambda pre, signed: (signed, signed),  # "pre-command" already signed
        lambda pre, signed: (b"\xdf\x09", signed),  # truncated pre-command
        lambda pre, signed: (pre, b""),
    ],
)
def test_malformed_inputs(pairs: list[Pair], mangle: object) -> None:
    _, pre, signed = pairs[0]
    assert callable(mangle)
    first, second = mangle(pre, signed)
    with pytest.raises(CorrelationError) as caught:
        correlate(first, second)
    assert caught.value.reason is Reason.MALFORMED


def test_a_maced_command_or_a_response_is_not_a_signed_pre_command(
    shared_dir: Path, pairs: list[Pair]
) -> None:
    name, pre, _ = pairs[0]
    folder = next((shared_dir / "gbcs/rtds/RTDS-4.5.0").glob(f"*/{name}")).parent
    command = bytes.fromhex((folder / name.replace("_PRECOMMAND_", "_COMMAND_")).read_text())
    response = bytes.fromhex((folder / name.replace("_PRECOMMAND_", "_RESPONSE_")).read_text())
    for wrong in (command, response):
        with pytest.raises(CorrelationError) as caught:
            correlate(pre, wrong)
        assert caught.value.reason is Reason.MALFORMED


def test_sign_then_correlate_with_the_users_test_key(pairs: list[Pair], keystore: Path) -> None:
    private = serialization.load_pem_private_key(
        (keystore / "90b3d51f30010000-ds.key").read_bytes(), None
    )
    assert isinstance(private, ec.EllipticCurvePrivateKey)
    for _, pre, _ in pairs[:10]:
        signed = sign_pre_command(pre, private)
        correlate(pre, signed)
        verify_pre_command_signature(signed, private.public_key())


def test_a_non_p256_key_is_refused(pairs: list[Pair]) -> None:
    _, pre, signed = pairs[0]
    other_curve = ec.generate_private_key(ec.SECP384R1())
    with pytest.raises(CorrelationError) as caught:
        verify_pre_command_signature(signed, other_curve.public_key())
    assert caught.value.reason is Reason.SIGNATURE_INVALID
    with pytest.raises(ValueError, match="P-256"):
        sign_pre_command(pre, other_curve)


@pytest.mark.parametrize("version", SUPPORTED_VERSIONS)
def test_every_version_has_a_correlating_handler(
    pairs: list[Pair], keystore: Path, version: str
) -> None:
    handlers = handlers_for(version)
    _, pre, signed = pairs[-1]
    assert handlers.correlate(pre, signed).signature == signed[-64:]
    handlers.verify_pre_command_signature(signed, _user_key(keystore, signed))


@settings(deadline=None, max_examples=300)
@given(st.integers(0, 10_000), st.integers(0, 255), st.integers(0, 2))
def test_mutated_signed_pre_commands_never_crash(
    pairs: list[Pair], position: int, value: int, which: int
) -> None:
    _, pre, signed = pairs[which]
    mutated = bytearray(signed)
    mutated[position % len(mutated)] = value
    try:
        correlate(pre, bytes(mutated))
    except CorrelationError as exc:
        assert exc.reason in (Reason.MALFORMED, Reason.PAYLOAD_MISMATCH)
