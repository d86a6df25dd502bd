"""A minimal DER reader for the ASN.1 payloads of GBCS (CS02, CS03, CS04, CS06, CS07,
CS08, GCS28, GCS59 and their alerts): tag, length, contents; nothing is interpreted
beyond what a use case asks for (sans-IO)."""

from __future__ import annotations

import datetime as dt

import msgspec

from parse_correlate.decode.errors import DecodeError
from parse_correlate.gbcs_bytes import ByteReader

INTEGER = 0x02
BIT_STRING = 0x03
OCTET_STRING = 0x04
NULL = 0x05
ENUMERATED = 0x0A
GENERALIZED_TIME = 0x18
SEQUENCE = 0x30


class Der(msgspec.Struct, frozen=True):
    tag: int
    contents: bytes

    def children(self) -> list[Der]:
        if self.tag & 0x20 == 0:
            raise DecodeError(f"DER tag 0x{self.tag:02X} is not constructed")
        return read_all(self.contents)

    def integer(self) -> int:
        if self.tag not in (INTEGER, ENUMERATED) or not self.contents:
            raise DecodeError(f"expected a DER INTEGER, got tag 0x{self.tag:02X}")
        return int.from_bytes(self.contents, "big", signed=True)

    def counter(self) -> int:
        """An INTEGER that counts (sequence numbers, originator counters): never negative."""
        value = self.integer()
        if value < 0:
            raise DecodeError(f"counter {value} is negative")
        return value

    def octets(self) -> bytes:
        if self.tag != OCTET_STRING:
            raise DecodeError(f"expected a DER OCTET STRING, got tag 0x{self.tag:02X}")
        return self.contents

    def generalized_time(self) -> dt.datetime:
        if self.tag != GENERALIZED_TIME:
            raise DecodeError(f"expected a DER GeneralizedTime, got tag 0x{self.tag:02X}")
        try:
            moment = dt.datetime.strptime(self.contents.decode("ascii"), "%Y%m%d%H%M%SZ")
        except (UnicodeDecodeError, ValueError) as exc:
            raise DecodeError(f"malformed GeneralizedTime {self.contents!r}") from exc
        return moment.replace(tzinfo=dt.UTC)


def read_one(data: bytes) -> Der:
    """Exactly one DER value filling `data`."""
    values = read_all(data)
    if len(values) != 1:
        raise DecodeError(f"expected one DER value, found {len(values)}")
    return values[0]


def read_all(data: bytes) -> list[Der]:
    reader = ByteReader(data)
    values = []
    while reader.remaining:
        tag = reader.byte("DER tag")
        if tag & 0x1F == 0x1F:
            raise DecodeError("multi-byte DER tags are not used by GBCS")
        values.append(Der(tag, reader.take(_length(reader), "DER value")))
    return values


def _length(reader: ByteReader) -> int:
    # GBCS writes some lengths in the long form even below 128 (0x82 00 DE): accepted,
    # unlike the framing's lengths, because BER allows it and the RTDS alerts use it.
    first = reader.byte("DER length")
    if first < 0x80:
        return first
    size = first & 0x7F
    if not 1 <= size <= 3:
        raise DecodeError(f"DER length form 0x{first:02X} is not supported")
    return int.from_bytes(reader.take(size, "DER length"), "big")
