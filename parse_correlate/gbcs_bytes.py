"""The byte level under GBCS framing: a bounded reader, DER-style lengths, GbcsError.

Shared by the framing (`parse_correlate.gbcs`), the MAC's key derivation
(`parse_correlate.gbcs_mac`) and the payload decoders (DLMS A-XDR uses the same
length form). Only the minimal length form is accepted: every RTDS vector uses it,
and one message having two encodings would let framing differ where correlation
compares bytes.
"""

from __future__ import annotations


class GbcsError(ValueError):
    """The bytes are not a well-formed GBCS message (the sender's fault)."""


class ByteReader:
    """A bounded cursor whose every short read is a GbcsError, never an IndexError.

    Shared with the payload decoders: DLMS A-XDR uses the same length form."""

    __slots__ = ("_data", "_end", "pos")

    def __init__(self, data: bytes, pos: int = 0, end: int | None = None) -> None:
        self._data = data
        self.pos = pos
        self._end = len(data) if end is None else end

    @property
    def remaining(self) -> int:
        return self._end - self.pos

    def take(self, count: int, what: str) -> bytes:
        if count > self.remaining:
            raise GbcsError(
                f"truncated {what}: needs {count} bytes, {self.remaining} left at offset {self.pos}"
            )
        chunk = self._data[self.pos : self.pos + count]
        self.pos += count
        return chunk

    def byte(self, what: str) -> int:
        return self.take(1, what)[0]

    def length(self, what: str) -> int:
        first = self.byte(f"{what} length")
        if first < 0x80:
            return first
        size = first & 0x7F
        if not 1 <= size <= 3:
            raise GbcsError(f"{what} length has unsupported form 0x{first:02X}")
        value = int.from_bytes(self.take(size, f"{what} length"), "big")
        if value < 0x80 or value >> (8 * (size - 1)) == 0:
            raise GbcsError(f"{what} length {value} is not minimally encoded")
        return value

    def octets(self, what: str) -> bytes:
        return self.take(self.length(what), what)


def encode_length(value: int) -> bytes:
    if value < 0x80:
        return bytes([value])
    size = (value.bit_length() + 7) // 8
    if size > 3:
        raise GbcsError(f"length {value} exceeds the 3-byte length form")
    return bytes([0x80 | size]) + value.to_bytes(size, "big")
