"""DLMS/COSEM payloads of GBCS (sans-IO): A-XDR data, access-response, data-notification.

Layouts from the GBCS payload definitions (DLMS General Block, section 7 of GBCS), as
the RTDS 4.5.0 vectors carry them:

- access-response (tag 0xDA): long-invoke-id-and-priority (4), date-time (octet string,
  empty in GBCS), access-request-specification flag (0: absent), then the list of data
  and the list of access-response-specifications (one per request: get, set or action,
  each with its result code).
- data-notification (tag 0x0F): long-invoke-id-and-priority (4), date-time (absent,
  0x00), then one DLMS structure: the alert code (long-unsigned), the alert's date-time
  (octet string of 12) and, for some alerts, use-case-specific content.

Protected data (GBCS "get protected attributes" responses and the billing data log
alert): AES-GCM under a key agreed between the device and the User for the transaction
named in the protection parameters; decrypted only with the User's key agreement key.
"""

from __future__ import annotations

from typing import TypeAlias

import msgspec
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from mmc.identifiers import eui64_from_bytes
from parse_correlate.decode.errors import DecodeError, ProtectedDataError
from parse_correlate.gbcs_bytes import ByteReader
from parse_correlate.gbcs_mac import KeyAgreement, message_key

ACCESS_RESPONSE_TAG = 0xDA
DATA_NOTIFICATION_TAG = 0x0F
MAX_DLMS_DEPTH = 16  # nesting limit: hostile payloads must not exhaust the stack
GCM_TAG_BYTES = 12
_SECURITY_HEADER_BYTES = 5

DlmsData: TypeAlias = "bool | int | bytes | str | tuple[DlmsData, ...] | list[DlmsData] | None"


class ProtectedData(msgspec.Struct, frozen=True):
    """Encrypted DLMS data as it travels: decrypt with `decrypt_protected`."""

    transaction_id: bytes
    originator: bytes
    recipient: bytes
    blob: bytes  # security header (5), ciphertext, GCM tag (12)


class AccessResult(msgspec.Struct, frozen=True):
    kind: str  # "get", "set" or "action": which DLMS result enumeration the code is from
    code: int

    @property
    def success(self) -> bool:
        return self.code == 0


class AccessResponse(msgspec.Struct, frozen=True):
    data: list[DlmsData]
    results: list[AccessResult]


class DataNotification(msgspec.Struct, frozen=True):
    alert_code: int
    date_time: bytes  # 12-byte DLMS date-time
    content: list[DlmsData]  # use-case-specific elements after the date-time


_FIXED_INTS: dict[int, tuple[int, bool]] = {  # tag -> (size, signed)
    5: (4, True), 6: (4, False), 15: (1, True), 16: (2, True), 17: (1, False),
    18: (2, False), 20: (8, True), 21: (8, False), 22: (1, False),
}  # fmt: skip
_FIXED_OCTETS = {13: 1, 23: 4, 24: 8, 25: 12, 26: 5, 27: 4}  # bcd, floats, date-time, date, time
_COMPACT_ARRAY_TAG = 19


def decode_data(reader: ByteReader, depth: int = 0) -> DlmsData:
    """One DLMS Data value: structures become tuples, arrays lists, enums ints,
    octet strings bytes, visible and UTF-8 strings str."""
    if depth > MAX_DLMS_DEPTH:
        raise DecodeError(f"DLMS data nested deeper than {MAX_DLMS_DEPTH}")
    tag = reader.byte("DLMS data tag")
    if tag == 0:
        return None
    if tag in (1, 2):
        items = [decode_data(reader, depth + 1) for _ in range(reader.length("DLMS count"))]
        return items if tag == 1 else tuple(items)
    if tag == 3:
        return reader.byte("DLMS boolean") != 0
    if tag in _FIXED_INTS:
        size, signed = _FIXED_INTS[tag]
        return int.from_bytes(reader.take(size, "DLMS integer"), "big", signed=signed)
    if tag == 4:
        return reader.take((reader.length("DLMS bit-string") + 7) // 8, "DLMS bit-string")
    if tag in (9, 10, 12):
        raw = reader.octets("DLMS string")
        return raw if tag == 9 else raw.decode("utf-8", errors="replace")
    if tag in _FIXED_OCTETS:
        return reader.take(_FIXED_OCTETS[tag], "DLMS fixed-size value")
    if tag == _COMPACT_ARRAY_TAG:
        return _compact_array(reader, depth)
    raise DecodeError(f"unsupported DLMS data type {tag}")


# A compact-array's type description: a tag, or (2, [descriptions]) for a structure, or
# (1, count, description) for an array.
_TypeDescription: TypeAlias = (
    "int | tuple[int, list[_TypeDescription]] | tuple[int, int, _TypeDescription]"
)
_MAX_COMPACT_ELEMENTS = 10_000  # far above any GBCS log (1440 profile entries at most)


def _type_description(reader: ByteReader, depth: int) -> _TypeDescription:
    if depth > MAX_DLMS_DEPTH:
        raise DecodeError(f"DLMS type description nested deeper than {MAX_DLMS_DEPTH}")
    tag = reader.byte("DLMS type description")
    if tag == 2:
        return (2, [_type_description(reader, depth + 1) for _ in range(reader.length("count"))])
    if tag == 1:
        count = int.from_bytes(reader.take(2, "compact array count"), "big")
        return (1, count, _type_description(reader, depth + 1))
    return tag


def _compact_array(reader: ByteReader, depth: int) -> list[DlmsData]:
    """Profile and log buffers: one type description, then untagged values."""
    description = _type_description(reader, depth + 1)
    contents = ByteReader(reader.octets("compact array contents"))
    items: list[DlmsData] = []
    while contents.remaining:
        if len(items) >= _MAX_COMPACT_ELEMENTS:
            raise DecodeError(f"compact array longer than {_MAX_COMPACT_ELEMENTS} elements")
        items.append(_untagged(contents, description, depth + 1))
    return items


def _untagged(reader: ByteReader, description: _TypeDescription, depth: int) -> DlmsData:
    if depth > MAX_DLMS_DEPTH:
        raise DecodeError(f"DLMS data nested deeper than {MAX_DLMS_DEPTH}")
    match description:
        case (2, list() as fields):
            return tuple(_untagged(reader, field, depth + 1) for field in fields)
        case (1, int() as count, element):
            return [_untagged(reader, element, depth + 1) for _ in range(count)]
        case int() as tag:
            # The tagged decoder reads the value after its tag: feed it the tag.
            return _untagged_simple(reader, tag)
    raise DecodeError("malformed compact array type description")


def _untagged_simple(reader: ByteReader, tag: int) -> DlmsData:
    if tag in _FIXED_INTS:
        size, signed = _FIXED_INTS[tag]
        return int.from_bytes(reader.take(size, "DLMS integer"), "big", signed=signed)
    if tag in _FIXED_OCTETS:
        return reader.take(_FIXED_OCTETS[tag], "DLMS fixed-size value")
    if tag == 3:
        return reader.byte("DLMS boolean") != 0
    if tag in (9, 10, 12):
        raw = reader.octets("DLMS string")
        return raw if tag == 9 else raw.decode("utf-8", errors="replace")
    if tag == 0:
        return None
    raise DecodeError(f"unsupported DLMS type {tag} in a compact array")


def decode_access_response(payload: bytes) -> AccessResponse:
    reader = ByteReader(payload)
    if reader.byte("access-response tag") != ACCESS_RESPONSE_TAG:
        raise DecodeError("payload is not a DLMS access-response (0xDA)")
    reader.take(4, "long-invoke-id-and-priority")
    reader.octets("access-response date-time")
    if reader.byte("access-request-specification flag") != 0:
        raise DecodeError("access-response echoing its request is not supported")
    data = [decode_data(reader) for _ in range(reader.length("list of data"))]
    results = [_decode_result(reader) for _ in range(reader.length("list of results"))]
    if reader.remaining:
        raise DecodeError(f"{reader.remaining} bytes after the access-response")
    if len(results) != len(data):
        raise DecodeError("access-response has different numbers of data and results")
    return AccessResponse(data=data, results=results)


_RESULT_KINDS = {1: "get", 2: "set", 3: "action"}


def _decode_result(reader: ByteReader) -> AccessResult:
    choice = reader.byte("access-response-specification")
    if choice not in _RESULT_KINDS:
        raise DecodeError(f"unknown access-response-specification choice {choice}")
    return AccessResult(kind=_RESULT_KINDS[choice], code=reader.byte("access result"))


def decode_data_notification(payload: bytes) -> DataNotification:
    reader = ByteReader(payload)
    if reader.byte("data-notification tag") != DATA_NOTIFICATION_TAG:
        raise DecodeError("payload is not a DLMS data-notification (0x0F)")
    reader.take(4, "long-invoke-id-and-priority")
    if reader.byte("data-notification date-time") != 0:
        raise DecodeError("data-notification date-time must be absent in GBCS")
    body = decode_data(reader)
    if reader.remaining:
        raise DecodeError(f"{reader.remaining} bytes after the data-notification")
    match body:
        case (int() as code, bytes() as date_time, *content) if len(date_time) == 12:
            return DataNotification(alert_code=code, date_time=date_time, content=content)
    raise DecodeError("data-notification body is not (alert code, date-time, ...)")


def protected_data(value: DlmsData) -> ProtectedData | None:
    """The protected-data form ((protection parameters...), ciphertext), or None when
    the value is plain (a device error answers with plain data, for example)."""
    match value:
        case ([(2, (bytes() as transaction_id, bytes() as originator, bytes() as recipient, *_))],
              bytes() as blob):  # fmt: skip
            # Protection type 2 (authenticated and encrypted), the only one GBCS uses.
            if len(originator) != 8 or len(recipient) != 8:
                raise DecodeError("protection parameters name system titles of the wrong size")
            if len(blob) < _SECURITY_HEADER_BYTES + GCM_TAG_BYTES:
                raise DecodeError("protected data too short for its security header and tag")
            return ProtectedData(transaction_id, originator, recipient, blob)
    return None


def decrypt_protected(protected: ProtectedData, keys: KeyAgreement) -> DlmsData:
    """Decrypt protected DLMS data: the key is agreed for the transaction and system
    titles its protection parameters name, the IV is the originator's title and the
    invocation counter, the additional data the security control byte."""
    plain = decrypt_gcm(
        keys,
        transaction_id=protected.transaction_id,
        originator=protected.originator,
        recipient=protected.recipient,
        blob=protected.blob,
        additional=protected.blob[:1],
    )
    reader = ByteReader(plain)
    decoded = decode_data(reader)
    if reader.remaining:
        raise DecodeError("bytes after the decrypted DLMS data")
    return decoded


def decrypt_gcm(
    keys: KeyAgreement,
    *,
    transaction_id: bytes,
    originator: bytes,
    recipient: bytes,
    blob: bytes,
    additional: bytes,
) -> bytes:
    """AES-GCM decryption of a GBCS protected blob (security header, ciphertext, tag);
    shared by DLMS protected data and GBZ encrypted components."""
    key = message_key(
        keys, eui64_from_bytes(originator), transaction_id, eui64_from_bytes(recipient)
    )
    iv = originator + blob[1:_SECURITY_HEADER_BYTES]
    decryptor = Cipher(
        algorithms.AES(key), modes.GCM(iv, blob[-GCM_TAG_BYTES:], GCM_TAG_BYTES)
    ).decryptor()
    decryptor.authenticate_additional_data(additional)
    try:
        return decryptor.update(blob[_SECURITY_HEADER_BYTES:-GCM_TAG_BYTES]) + decryptor.finalize()
    except InvalidTag as exc:
        raise ProtectedDataError("protected data fails authentication with these keys") from exc
