"""Is this response or alert what the device sent? MAC and signature checks (sans-IO).

A device protects a response or alert either with a MAC (general-ciphering: GMAC under
the key agreed between the device and the User for this message) or with its signature
(general-signing: ECDSA P-256 by the device's digital-signing key). Whoever holds the
matching key checks it before believing a single decoded value: with the key, a MAC or
signature that does not verify is an `IntegrityError`, never output. Without the key
the check cannot be made, and the result says so (`NOT_AUTHENTICATED`).

The gateway holds no User keys: it can check signatures (with the device's certificate
from the SMKI repository) but never MACs, so it calls `authenticate` with only the
signing key (`Credentials(device_signing_key=...)`).
"""

from __future__ import annotations

import enum
from typing import NamedTuple

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, utils

from parse_correlate.gbcs import SIGNATURE_BYTES, GbcsMessage, verify_mac
from parse_correlate.gbcs_bytes import GbcsError
from parse_correlate.gbcs_mac import KeyAgreement

_P256_SCALAR_BYTES = 32


class Credentials(NamedTuple):
    """What a reader of device messages may hold.

    user_keys: the User's key agreement private key and the device's public key. They
    decrypt protected values, and check the MAC of a message addressed to the User.
    mac_keys: the MAC recipient's pair when that is not the User: a response to a
    command the DCC sent for the User (GBCS 4.3.1.4: the User is then the supplementary
    remote party) is MACed for the DCC's Access Control Broker.
    device_signing_key: the device's digital-signing public key (signed messages)."""

    user_keys: KeyAgreement | None = None
    device_signing_key: ec.EllipticCurvePublicKey | None = None
    mac_keys: KeyAgreement | None = None

    @property
    def any(self) -> bool:
        return any(key is not None for key in self)


class Authentication(enum.StrEnum):
    MAC_VERIFIED = "MAC verified"
    SIGNATURE_VERIFIED = "signature verified"
    NOT_AUTHENTICATED = "not authenticated"


class IntegrityError(GbcsError):
    """A MAC or signature does not verify with the keys supplied: the message was
    altered, or it is not from the device it names."""

    def __init__(self, what: str, message: GbcsMessage) -> None:
        header = message.header
        super().__init__(
            f"{what} does not verify: message from {header.originator} to {header.recipient},"
            f" counter {header.originator_counter}, is altered or not from its originator"
        )
        self.what = what


def authenticate(message: GbcsMessage, credentials: Credentials | None) -> Authentication:
    """Check what the credentials allow; IntegrityError if a check fails. A message
    carrying a MAC is checked with the key agreement keys, a signed one with the
    device's signing key; a check without its key is not made (NOT_AUTHENTICATED)."""
    credentials = credentials or Credentials()
    if message.mac is not None:
        keys = credentials.mac_keys
        if keys is None and message.header.supplementary_remote_party is None:
            keys = credentials.user_keys  # the message is addressed to the User
        if keys is None:
            return Authentication.NOT_AUTHENTICATED
        if not verify_mac(message, keys):
            raise IntegrityError("MAC", message)
        return Authentication.MAC_VERIFIED
    if message.signature:
        if credentials.device_signing_key is None:
            return Authentication.NOT_AUTHENTICATED
        verify_device_signature(message, credentials.device_signing_key)
        return Authentication.SIGNATURE_VERIFIED
    if credentials.any:
        # Every device response and alert carries one or the other: one stripped of
        # both must not pass as unchecked when the reader could have checked it.
        raise IntegrityError("protection (neither MAC nor signature present)", message)
    return Authentication.NOT_AUTHENTICATED


def verify_device_signature(message: GbcsMessage, public_key: ec.EllipticCurvePublicKey) -> None:
    """The device's ECDSA P-256 signature over the signing block (minus its tag)."""
    signature = message.signature
    if not signature or len(signature) != SIGNATURE_BYTES:
        raise IntegrityError("signature (absent or of the wrong size)", message)
    if not isinstance(public_key.curve, ec.SECP256R1):
        raise IntegrityError("signature (key is not P-256)", message)
    r = int.from_bytes(signature[:_P256_SCALAR_BYTES], "big")
    s = int.from_bytes(signature[_P256_SCALAR_BYTES:], "big")
    try:
        public_key.verify(
            utils.encode_dss_signature(r, s), message.signed_data, ec.ECDSA(hashes.SHA256())
        )
    except InvalidSignature:
        raise IntegrityError("signature", message) from None
