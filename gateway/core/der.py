"""Our own strict reading of a certificate's bytes, before any X.509 library sees them.

Why: the `cryptography` parser's verdict on a malformed certificate changes between
releases (an ECDSA signature algorithm with NULL parameters, as in the DCC's ``mdr-*``
test certificates, was accepted with a deprecation warning, then refused with a
parser error of different wording). The certificate store names the fault from this
module, so its refusal reads the same whatever library version is installed.

Checked: DER's length rules on every constructed element (definite, minimal, no bytes
left over), the Certificate's outer shape, a minimal serial INTEGER, and the
AlgorithmIdentifier rules of RFC 5280 §4.1.1.2 and RFC 5758 §3.2 (ECDSA carries no
parameters). It is not an X.509 parser: the library still parses what passes here.
"""

from __future__ import annotations

import base64
import binascii
import re
from typing import Final, NamedTuple

SEQUENCE: Final = 0x30
SET: Final = 0x31
INTEGER: Final = 0x02
BIT_STRING: Final = 0x03
OBJECT_IDENTIFIER: Final = 0x06
CONTEXT_0: Final = 0xA0  # [0] EXPLICIT, the TBSCertificate version

# 1.2.840.10045.4: the ecdsa-with-SHA* signature algorithms (OID content octets).
_ECDSA_SIGNATURE_OID_PREFIX: Final = bytes.fromhex("2a8648ce3d04")
_CONSTRUCTED: Final = 0x20
_HIGH_TAG_NUMBER: Final = 0x1F
MAX_NESTING: Final = 32  # X.509 nests about 10 deep; bounds the recursion on hostile files
_PEM_CERTIFICATE: Final = re.compile(
    rb"-----BEGIN CERTIFICATE-----\s*(.*?)-----END CERTIFICATE-----", re.DOTALL
)


class DerError(ValueError):
    """The bytes are not a strict DER certificate; the message says where."""


class Tlv(NamedTuple):
    tag: int
    content: bytes
    encoded: bytes  # tag, length and content, as they appear


def pem_certificate(data: bytes) -> bytes:
    """The DER bytes of the first ``CERTIFICATE`` block of a PEM file."""
    match = _PEM_CERTIFICATE.search(data)
    if match is None:
        raise DerError("no BEGIN/END CERTIFICATE block")
    try:
        return base64.b64decode(b"".join(match.group(1).split()), validate=True)
    except binascii.Error:
        raise DerError("the CERTIFICATE block is not base64") from None


def read_elements(data: bytes) -> list[Tlv]:
    """The elements `data` is made of, end to end; constructed ones are checked deeply."""
    return _read_elements(data, 0)


def _read_elements(data: bytes, depth: int) -> list[Tlv]:
    if depth > MAX_NESTING:
        raise DerError(f"nested more than {MAX_NESTING} deep")
    elements = []
    offset = 0
    while offset < len(data):
        element = _read_one(data, offset)
        if element.tag & _CONSTRUCTED:
            _read_elements(element.content, depth + 1)
        elements.append(element)
        offset += len(element.encoded)
    return elements


def _read_one(data: bytes, offset: int) -> Tlv:
    if len(data) - offset < 2:
        raise DerError(f"truncated element at byte {offset}")
    tag, first = data[offset], data[offset + 1]
    if tag & _HIGH_TAG_NUMBER == _HIGH_TAG_NUMBER:
        raise DerError(f"high tag number form at byte {offset} (not used in X.509)")
    start = offset + 2
    if first < 0x80:
        length = first
    elif first == 0x80:
        raise DerError(f"indefinite length at byte {offset} (BER, not DER)")
    else:
        count = first & 0x7F
        octets = data[start : start + count]
        if len(octets) != count:
            raise DerError(f"truncated length at byte {offset}")
        length = int.from_bytes(octets, "big")
        if octets[0] == 0 or length < 0x80:
            raise DerError(f"length at byte {offset} is not in its shortest form")
        start += count
    end = start + length
    if end > len(data):
        raise DerError(f"element at byte {offset} runs past the end of its container")
    return Tlv(tag, data[start:end], data[offset:end])


def _expect(elements: list[Tlv], index: int, tag: int, what: str) -> Tlv:
    if index >= len(elements) or elements[index].tag != tag:
        raise DerError(f"{what} missing or of the wrong type")
    return elements[index]


def check_certificate(der: bytes) -> None:
    """Raise `DerError` naming the first fault of a certificate's encoding."""
    (certificate,) = _whole(der, "certificate")
    parts = read_elements(_expect([certificate], 0, SEQUENCE, "Certificate").content)
    if len(parts) != 3:
        raise DerError(f"Certificate has {len(parts)} parts, not 3")
    tbs = read_elements(_expect(parts, 0, SEQUENCE, "tbsCertificate").content)
    outer_algorithm = _expect(parts, 1, SEQUENCE, "signatureAlgorithm")
    _expect(parts, 2, BIT_STRING, "signatureValue")
    index = 1 if tbs and tbs[0].tag == CONTEXT_0 else 0
    _check_integer(_expect(tbs, index, INTEGER, "serialNumber").content, "serialNumber")
    inner_algorithm = _expect(tbs, index + 1, SEQUENCE, "tbsCertificate signature")
    for algorithm in (inner_algorithm, outer_algorithm):
        _check_algorithm(algorithm)
    if inner_algorithm.encoded != outer_algorithm.encoded:
        raise DerError("signatureAlgorithm differs from the tbsCertificate's signature field")


def _whole(der: bytes, what: str) -> list[Tlv]:
    elements = read_elements(der)
    if len(elements) != 1:
        raise DerError(f"{len(elements)} top-level elements, not one {what}")
    return elements


def _check_integer(content: bytes, what: str) -> None:
    if not content:
        raise DerError(f"{what} is empty")
    if len(content) > 1 and (
        (content[0] == 0x00 and content[1] < 0x80) or (content[0] == 0xFF and content[1] >= 0x80)
    ):
        raise DerError(f"{what} is not in its shortest form")


def _check_algorithm(algorithm: Tlv) -> None:
    fields = read_elements(algorithm.content)
    oid = _expect(fields, 0, OBJECT_IDENTIFIER, "AlgorithmIdentifier algorithm").content
    if oid.startswith(_ECDSA_SIGNATURE_OID_PREFIX) and len(fields) > 1:
        raise DerError("ECDSA signature algorithm with parameters (RFC 5758: absent)")
