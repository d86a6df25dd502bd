"""GBZ payloads (the ZigBee side of GBCS, section 7.2) and ZCL frames (sans-IO).

A GBZ payload is the profile id 0x0109, a component count and the components. Each
component: a control field (bit 1: encrypted content, bit 4: a 'from date-time' is
present), the cluster id and the length of what follows (both big-endian, as GBCS
writes its own fields), then the ZCL frame: frame control, sequence number, command id
and the command's payload (little-endian, as ZCL writes its fields).

An encrypted component puts two bytes (additional header control and frame counter)
before the ZCL header and, after the command id, the ciphered length (2), the security
header (5), the ciphertext and a 12-byte GCM tag. It is decrypted with the key agreed for
the message's own transaction (transaction-id 0x04 + the originator counter).

An alert GBZ payload is the profile id, the component count, the alert code (2) and the
alert's UTC time (4), then any use-case-specific components.
"""

from __future__ import annotations

import datetime as dt

import msgspec

from parse_correlate.decode.errors import DecodeError
from parse_correlate.gbcs_bytes import ByteReader

GBZ_PROFILE_ID = 0x0109
CONTROL_ENCRYPTED = 0x02
CONTROL_FROM_DATE_TIME = 0x10
FRAME_TYPE_CLUSTER = 0x01  # frame control bits 0-1: 0 profile-wide, 1 cluster-specific
FRAME_SERVER_TO_CLIENT = 0x08
READ_ATTRIBUTES_RESPONSE = 0x01
DEFAULT_RESPONSE = 0x0B
ZCL_EPOCH = dt.datetime(2000, 1, 1, tzinfo=dt.UTC)  # ZCL UTCTime counts seconds from here
ZCL_INVALID_UTC = 0xFFFFFFFF


class GbzComponent(msgspec.Struct, frozen=True):
    control: int
    cluster: int
    frame_control: int
    sequence: int
    command: int
    payload: bytes  # the ZCL command payload; for an encrypted component, the blob
    from_date_time: int | None = None  # ZCL UTCTime, when the control field says so
    encrypted: bool = False

    @property
    def cluster_specific(self) -> bool:
        return self.frame_control & 0x03 == FRAME_TYPE_CLUSTER

    @property
    def is_default_response(self) -> bool:
        return not self.cluster_specific and self.command == DEFAULT_RESPONSE

    @property
    def is_read_attributes_response(self) -> bool:
        return not self.cluster_specific and self.command == READ_ATTRIBUTES_RESPONSE


class GbzAlertHeader(msgspec.Struct, frozen=True):
    alert_code: int
    utc_time: int  # ZCL UTCTime
    rest: bytes  # components or use-case-specific content after the time


class AttributeRecord(msgspec.Struct, frozen=True):
    attribute: int
    status: int
    data_type: int | None = None
    value: int | bytes | None = None


def decode_gbz(payload: bytes) -> list[GbzComponent]:
    reader = ByteReader(payload)
    _profile(reader)
    count = reader.byte("GBZ component count")
    components = [_component(reader) for _ in range(count)]
    if reader.remaining:
        raise DecodeError(f"{reader.remaining} bytes after the GBZ components")
    return components


def decode_gbz_alert(payload: bytes) -> GbzAlertHeader:
    reader = ByteReader(payload)
    _profile(reader)
    reader.byte("GBZ component count")
    code = int.from_bytes(reader.take(2, "GBZ alert code"), "big")
    utc = int.from_bytes(reader.take(4, "GBZ alert time"), "big")
    return GbzAlertHeader(code, utc, reader.take(reader.remaining, "GBZ alert content"))


def _profile(reader: ByteReader) -> None:
    profile = int.from_bytes(reader.take(2, "GBZ profile id"), "big")
    if profile != GBZ_PROFILE_ID:
        raise DecodeError(f"GBZ profile id 0x{profile:04X} is not 0x0109")


def _component(reader: ByteReader) -> GbzComponent:
    control = reader.byte("GBZ control field")
    cluster = int.from_bytes(reader.take(2, "GBZ cluster id"), "big")
    length = int.from_bytes(reader.take(2, "GBZ component length"), "big")
    body = ByteReader(reader.take(length, "GBZ component"))
    from_date_time = None
    encrypted = bool(control & CONTROL_ENCRYPTED)
    if encrypted:
        body.take(2, "GBZ additional header")
    elif control & CONTROL_FROM_DATE_TIME:
        from_date_time = int.from_bytes(body.take(4, "GBZ from date-time"), "big")
    frame_control = body.byte("ZCL frame control")
    sequence = body.byte("ZCL sequence number")
    command = body.byte("ZCL command id")
    if encrypted:
        ciphered = int.from_bytes(body.take(2, "GBZ ciphered length"), "big")
        payload = body.take(ciphered, "GBZ ciphered information")
    else:
        payload = body.take(body.remaining, "ZCL payload")
    if body.remaining:
        raise DecodeError(f"{body.remaining} bytes after a GBZ component's content")
    return GbzComponent(
        control, cluster, frame_control, sequence, command, payload, from_date_time, encrypted
    )


def utc_time(seconds: int) -> dt.datetime | None:
    """ZCL UTCTime -> aware datetime; None for the 'invalid' value 0xFFFFFFFF."""
    if seconds == ZCL_INVALID_UTC:
        return None
    return ZCL_EPOCH + dt.timedelta(seconds=seconds)


# ---- ZCL values --------------------------------------------------------------------------

# ZCL data type -> (size in bytes, signed); little-endian on the wire.
_ZCL_FIXED: dict[int, tuple[int, bool]] = {
    0x08: (1, False), 0x10: (1, False), 0x18: (1, False), 0x19: (2, False),
    0x1B: (4, False), 0x20: (1, False), 0x21: (2, False), 0x22: (3, False),
    0x23: (4, False), 0x24: (5, False), 0x25: (6, False), 0x26: (7, False),
    0x27: (8, False), 0x28: (1, True), 0x29: (2, True), 0x2A: (3, True),
    0x2B: (4, True), 0x2C: (5, True), 0x2D: (6, True), 0x30: (1, False),
    0x31: (2, False), 0xE0: (4, False), 0xE1: (4, False), 0xE2: (4, False),
}  # fmt: skip
_ZCL_STRINGS = (0x41, 0x42)  # octet string, character string: one length byte


def zcl_value(reader: ByteReader, data_type: int) -> int | bytes:
    if data_type in _ZCL_FIXED:
        size, signed = _ZCL_FIXED[data_type]
        return int.from_bytes(reader.take(size, "ZCL value"), "little", signed=signed)
    if data_type in _ZCL_STRINGS:
        return reader.take(reader.byte("ZCL string length"), "ZCL string")
    raise DecodeError(f"unsupported ZCL data type 0x{data_type:02X}")


def read_attributes_response(payload: bytes) -> list[AttributeRecord]:
    reader = ByteReader(payload)
    records = []
    while reader.remaining:
        attribute = int.from_bytes(reader.take(2, "ZCL attribute id"), "little")
        status = reader.byte("ZCL attribute status")
        if status != 0:
            records.append(AttributeRecord(attribute, status))
            continue
        data_type = reader.byte("ZCL data type")
        records.append(AttributeRecord(attribute, 0, data_type, zcl_value(reader, data_type)))
    return records


def default_response_status(component: GbzComponent) -> int:
    """The status a ZCL Default Response carries (0 success)."""
    if len(component.payload) != 2:
        raise DecodeError("a ZCL Default Response is a command id and a status")
    return component.payload[1]


class ZclReader:
    """Fixed-layout ZCL command payloads: little-endian fields read in order."""

    __slots__ = ("_reader",)

    def __init__(self, payload: bytes) -> None:
        self._reader = ByteReader(payload)

    @property
    def remaining(self) -> int:
        return self._reader.remaining

    def uint(self, size: int, what: str) -> int:
        return int.from_bytes(self._reader.take(size, what), "little")

    def octets(self, what: str) -> bytes:
        return self._reader.take(self._reader.byte(f"{what} length"), what)

    def take(self, size: int, what: str) -> bytes:
        return self._reader.take(size, what)

    def rest(self) -> bytes:
        return self._reader.take(self._reader.remaining, "rest")
