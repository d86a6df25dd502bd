"""Pre-Command correlation and the User's signature on it (sans-IO).

A critical Service Request (CommandVariant 4) comes back as a Pre-Command: the GBCS
general-signing block with no signature field. The User checks it against its request,
signs it with its role's digital-signing key and returns it (CommandVariant 5/6/7). The
signed block must be the Pre-Command byte for byte, followed by the signature field:
length 0x40 and the 64-byte ECDSA P-256 signature r||s over the block minus its tag
(SHA-256). Learned from gbcs-parser (src/crypto.ts signGroupingHeader, src/parser.ts)
and HenryGiraldo/gbcs (calculate_signature); checked on all 178 RTDS Pre-Command and
signed Command pairs.

GBCS also allows the Pre-Command to end in a zero signature length, which signing
replaces (gbcs-parser notes DCC Boxed omits it); both forms correlate.
"""

from __future__ import annotations

import enum

import msgspec
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, utils

from parse_correlate.gbcs import SIGNATURE_BYTES, BlockKind, Cra, GbcsMessage, parse_message
from parse_correlate.gbcs_bytes import GbcsError

_P256_SCALAR_BYTES = 32


class Reason(enum.StrEnum):
    """Stable reason codes: logs, metrics and the DUIS response map from these."""

    NO_PENDING_PRE_COMMAND = "no_pending_pre_command"  # raised by the caller's store
    PAYLOAD_MISMATCH = "payload_mismatch"
    SIGNATURE_INVALID = "signature_invalid"
    MALFORMED = "malformed"


class CorrelationError(ValueError):
    def __init__(self, reason: Reason, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


class CorrelationResult(msgspec.Struct, frozen=True):
    message: GbcsMessage  # the signed pre-command, parsed
    signature: bytes  # 64 bytes r||s

    @property
    def originator_counter(self) -> int:
        return self.message.header.originator_counter

    @property
    def message_code(self) -> int:
        return self.message.header.message_code


def _parse_block(data: bytes, what: str) -> GbcsMessage:
    try:
        message = parse_message(data)
    except GbcsError as exc:
        raise CorrelationError(Reason.MALFORMED, f"{what}: {exc}") from exc
    if message.kind is not BlockKind.GENERAL_SIGNING or message.header.cra is not Cra.COMMAND:
        raise CorrelationError(Reason.MALFORMED, f"{what} is not a general-signing command")
    return message


def _signed_pre_command(data: bytes) -> tuple[GbcsMessage, bytes]:
    message = _parse_block(data, "signed pre-command")
    if message.signature is None or len(message.signature) != SIGNATURE_BYTES:
        raise CorrelationError(Reason.MALFORMED, "signed pre-command carries no 64-byte signature")
    return message, message.signature


def correlate(pre_command_gbcs: bytes, signed_pre_command_gbcs: bytes) -> CorrelationResult:
    """Check that the signed block is the Pre-Command plus a signature and nothing else."""
    pre = _parse_block(pre_command_gbcs, "pre-command")
    if pre.signature:
        raise CorrelationError(Reason.MALFORMED, "pre-command already carries a signature")
    signed, signature = _signed_pre_command(signed_pre_command_gbcs)
    # Compare bytes, not parsed fields: what the device executes is the bytes.
    if signed.unsigned_block != pre.unsigned_block:
        raise CorrelationError(Reason.PAYLOAD_MISMATCH, _first_difference(pre, signed))
    return CorrelationResult(message=signed, signature=signature)


def _first_difference(pre: GbcsMessage, signed: GbcsMessage) -> str:
    a, b = pre.unsigned_block, signed.unsigned_block
    offset = next((i for i, (x, y) in enumerate(zip(a, b, strict=False)) if x != y), None)
    if offset is None:
        return f"lengths differ: pre-command {len(a)} bytes, signed {len(b)} bytes"
    return f"first difference at byte {offset} of the signing block"


def verify_pre_command_signature(signed_gbcs: bytes, public_key: ec.EllipticCurvePublicKey) -> None:
    """Verify the User's signature with its role digital-signing public key."""
    message, signature = _signed_pre_command(signed_gbcs)
    if not isinstance(public_key.curve, ec.SECP256R1):
        raise CorrelationError(Reason.SIGNATURE_INVALID, "signing key is not ECDSA P-256")
    r = int.from_bytes(signature[:_P256_SCALAR_BYTES], "big")
    s = int.from_bytes(signature[_P256_SCALAR_BYTES:], "big")
    try:
        public_key.verify(
            utils.encode_dss_signature(r, s), message.signed_data, ec.ECDSA(hashes.SHA256())
        )
    except InvalidSignature as exc:
        raise CorrelationError(Reason.SIGNATURE_INVALID, "ECDSA verification failed") from exc


def sign_pre_command(pre_command_gbcs: bytes, private_key: ec.EllipticCurvePrivateKey) -> bytes:
    """What the User's P&C does: append the signature field to the Pre-Command."""
    if not isinstance(private_key.curve, ec.SECP256R1):
        raise ValueError("GBCS signatures need an ECDSA P-256 key")
    pre = _parse_block(pre_command_gbcs, "pre-command")
    if pre.signature:
        raise CorrelationError(Reason.MALFORMED, "pre-command already carries a signature")
    der = private_key.sign(pre.signed_data, ec.ECDSA(hashes.SHA256()))
    r, s = utils.decode_dss_signature(der)
    raw = r.to_bytes(_P256_SCALAR_BYTES, "big") + s.to_bytes(_P256_SCALAR_BYTES, "big")
    return pre.unsigned_block + bytes([SIGNATURE_BYTES]) + raw
