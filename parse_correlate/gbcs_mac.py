"""The GBCS MAC: per-message key derivation (ECDH + KDF) and the GMAC trailer (sans-IO).

A general-ciphering message (see `parse_correlate.gbcs`) ends in a 12-byte GMAC over
its security header and signing block, keyed by an AES-128 key derived for that one
message from the two ends' key agreement keys (GBCS 4.3.3.3). `gbcs.verify_mac`
checks a parsed message's trailer with these.
"""

from __future__ import annotations

import hashlib
from typing import NamedTuple

from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from mmc.identifiers import Eui64, eui64_to_bytes
from parse_correlate.gbcs_bytes import encode_length

MAC_BYTES = 12
SECURITY_HEADER_BYTES = 5  # security control (1) and invocation counter (4)
# KDF "otherInfo" algorithm-id (GBCS 4.3.3.3), learned from both reference parsers.
_KDF_ALGORITHM_ID = bytes.fromhex("60857406080300")


class KeyAgreement(NamedTuple):
    """One end's key agreement private key and the other end's public key: enough to
    derive a message's key (ECDH is symmetric, so either end can MAC or verify)."""

    own_private_key: ec.EllipticCurvePrivateKey
    peer_public_key: ec.EllipticCurvePublicKey


def message_key(
    keys: KeyAgreement, originator: Eui64, transaction_id: bytes, recipient: Eui64
) -> bytes:
    """The AES-128 key of one message instance (GBCS 4.3.3.3): ECDH, then the one-step
    SHA-256 KDF over algorithm-id, originator, transaction-id (as an octet string) and
    recipient. Either party computes it: ECDH is symmetric."""
    shared = keys.own_private_key.exchange(ec.ECDH(), keys.peer_public_key)
    other_info = b"".join(
        (
            _KDF_ALGORITHM_ID,
            eui64_to_bytes(originator),
            encode_length(len(transaction_id)) + transaction_id,
            eui64_to_bytes(recipient),
        )
    )
    return hashlib.sha256(b"\x00\x00\x00\x01" + shared + other_info).digest()[:16]


def compute_mac(block: bytes, originator: Eui64, security_header: bytes, key: bytes) -> bytes:
    """GMAC over security header, one zero byte and the signing block (the additional
    data layout of HenryGiraldo/gbcs calculate_mac; it reproduces every RTDS command MAC).
    The IV is the originator's system title and the invocation counter."""
    iv = eui64_to_bytes(originator) + security_header[1:SECURITY_HEADER_BYTES]
    encryptor = Cipher(algorithms.AES(key), modes.GCM(iv)).encryptor()
    encryptor.authenticate_additional_data(security_header + b"\x00" + block)
    encryptor.finalize()
    return encryptor.tag[:MAC_BYTES]
