"""The DUIS XMLDSig profile's fixed parts (sans-IO): identifiers, bounds, value decoders.

What both sides of the profile share: the writer (`gateway.core.signing`), the fast
acceptance (`gateway.core.signature`) and the slow walk that names a refusal's reason
(`gateway.core.signature_refusals`). Decoding a value lives here once, so the two
readers refuse a bad value with the same reason.
"""

from __future__ import annotations

import binascii
from typing import Final, Literal

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec

DS_NS: Final = "http://www.w3.org/2000/09/xmldsig#"
EXC_C14N: Final = "http://www.w3.org/2001/10/xml-exc-c14n#"
ECDSA_SHA256: Final = "http://www.w3.org/2001/04/xmldsig-more#ecdsa-sha256"
ENVELOPED: Final = "http://www.w3.org/2000/09/xmldsig#enveloped-signature"
SHA256: Final = "http://www.w3.org/2001/04/xmlenc#sha256"
P256_SCALAR_BYTES: Final = 32
ECDSA_WITH_SHA256: Final = ec.ECDSA(hashes.SHA256())


def ds(local: str) -> str:
    """The Clark name of a dsig element."""
    return f"{{{DS_NS}}}{local}"


SIGNATURE: Final = ds("Signature")

SignatureReason = Literal[
    "missing_signature",
    "multiple_signatures",
    "signature_not_last",
    "comment_in_signature",
    "unexpected_attribute",
    "bad_structure",
    "bad_algorithm",
    "bad_reference_uri",
    "bad_transforms",
    "bad_digest_value",
    "bad_signature_value",
    "bad_key_info",
    "canonicalization_failed",
    "wrong_key_type",
    "digest_mismatch",
    "signature_invalid",
]

# Bounds on attacker-controlled text, checked before any decoding. The base64 forms
# are 44 and 88 characters; the slack allows line breaks every 76 (as Java writes).
MAX_DIGEST_VALUE_CHARS: Final = 128
MAX_SIGNATURE_VALUE_CHARS: Final = 256
MAX_ISSUER_NAME_CHARS: Final = 1024
MAX_SERIAL_DIGITS: Final = 49  # RFC 5280: at most 20 octets, < 10**49
DIGEST_BYTES: Final = 32

XML_WS: Final = " \t\r\n"
_DELETE_XML_WS: Final = str.maketrans("", "", XML_WS)


class SignatureError(Exception):
    """The peer's signature is outside the profile or does not verify."""

    def __init__(self, reason: SignatureReason, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason: SignatureReason = reason
        self.detail = detail


def _decode_base64(text: str, max_chars: int, reason: SignatureReason, where: str) -> bytes:
    if len(text) > max_chars:
        raise SignatureError(reason, f"{where} is longer than {max_chars} characters")
    # strict_mode refuses non-alphabet bytes and misplaced padding that the lax
    # decoder skips; XML whitespace (Java's line breaks) is allowed and removed.
    try:
        return binascii.a2b_base64(text, strict_mode=True)
    except (binascii.Error, ValueError):
        pass  # most values carry no whitespace; removing it is the slow path
    try:
        return binascii.a2b_base64(text.translate(_DELETE_XML_WS), strict_mode=True)
    except (binascii.Error, ValueError):
        raise SignatureError(reason, f"{where} is not valid base64") from None


def decode_digest(text: str) -> bytes:
    raw = _decode_base64(text, MAX_DIGEST_VALUE_CHARS, "bad_digest_value", "DigestValue")
    if len(raw) != DIGEST_BYTES:
        raise SignatureError("bad_digest_value", f"DigestValue is {len(raw)} bytes, not 32")
    return raw


def decode_signature_value(text: str) -> tuple[int, int]:
    raw = _decode_base64(text, MAX_SIGNATURE_VALUE_CHARS, "bad_signature_value", "SignatureValue")
    if len(raw) != 2 * P256_SCALAR_BYTES:
        raise SignatureError("bad_signature_value", f"SignatureValue is {len(raw)} bytes, not 64")
    return int.from_bytes(raw[:P256_SCALAR_BYTES]), int.from_bytes(raw[P256_SCALAR_BYTES:])


def decode_issuer_name(text: str) -> str:
    text = text.strip(XML_WS)
    if not text or len(text) > MAX_ISSUER_NAME_CHARS:
        raise SignatureError("bad_key_info", "X509IssuerName is empty or too long")
    return text


def decode_serial(text: str) -> int:
    text = text.strip(XML_WS)
    # isascii() first: str.isdigit() also accepts superscripts and other scripts' digits.
    if not (text.isascii() and text.isdigit()) or len(text) > MAX_SERIAL_DIGITS:
        raise SignatureError("bad_key_info", "X509SerialNumber is not a decimal serial")
    return int(text)


def is_blank(text: str | None) -> bool:
    return text is None or not text.strip(XML_WS)
