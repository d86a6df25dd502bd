"""EUI-64 and RequestID: the identifiers every DUIS message carries.

EUI-64s are kept in their canonical DUIS text form (eight upper-case hex pairs
joined by '-') so they compare, hash and print without conversion.
"""

from __future__ import annotations

import re

import msgspec

Eui64 = str  # canonical "90-B3-D5-1F-30-01-00-00"

_EUI64_RE = re.compile(r"[0-9A-Fa-f]{2}(?:-[0-9A-Fa-f]{2}){7}\Z")
_COUNTER_RE = re.compile(r"(?:0|[1-9][0-9]{0,19})\Z")
MAX_COUNTER = 2**64 - 1


class IdentifierError(ValueError):
    """A DUIS identifier does not have its exact format."""


def parse_eui64(text: str) -> Eui64:
    """Validate a hyphenated EUI-64 and return its canonical (upper-case) form."""
    if not _EUI64_RE.match(text):
        raise IdentifierError(f"not an EUI-64 (8 hex pairs joined by '-'): {text[:40]!r}")
    return text.upper()


def eui64_from_bytes(raw: bytes) -> Eui64:
    if len(raw) != 8:
        raise IdentifierError(f"an EUI-64 is 8 bytes, got {len(raw)}")
    return "-".join(f"{b:02X}" for b in raw)


def eui64_to_bytes(eui: Eui64) -> bytes:
    return bytes.fromhex(eui.replace("-", ""))


def eui64_compact(eui: Eui64) -> str:
    """'90B3D51F30010000': the form used in certificate file names and logs."""
    return eui.replace("-", "")


class RequestId(msgspec.Struct, frozen=True):
    """`Originator:Target:Counter`; the counter is a uint64 that strictly increases."""

    originator: Eui64
    target: Eui64
    counter: int

    def __str__(self) -> str:
        return f"{self.originator}:{self.target}:{self.counter}"


def parse_request_id(text: str) -> RequestId:
    parts = text.split(":")
    if len(parts) != 3:
        raise IdentifierError(f"RequestID must be Originator:Target:Counter: {text[:80]!r}")
    originator, target, counter = parts
    if not _COUNTER_RE.match(counter) or int(counter) > MAX_COUNTER:
        raise IdentifierError(f"RequestID counter is not a decimal uint64: {counter[:30]!r}")
    return RequestId(parse_eui64(originator), parse_eui64(target), int(counter))
