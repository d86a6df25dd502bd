"""GBCS message framing: bytes <-> a typed message, and the MAC trailer (sans-IO).

The MAC's key derivation and GMAC are in `parse_correlate.gbcs_mac`, the message-code
table in `parse_correlate.gbcs_codes`, the byte reader and lengths in
`parse_correlate.gbcs_bytes`.

Layout, learned from SmartDCCInnovation/gbcs-parser (src/parser.ts, src/common.ts,
src/crypto.ts) and HenryGiraldo/gbcs (python/gbcs.py), and checked on every vector of
the DCC Reference Test Data Set 4.5.0 (tests/test_gbcs.py):

MAC header, "general-ciphering" (DLMS tag 0xDD). Wraps the signing block of commands the
DCC sends, and of responses and alerts a device protects with a MAC only::

    DD 00 00 00 00 00 00      tag; empty transaction-id, originator and recipient system
                              titles, date-time and other-information; key-info absent
    L                         ciphered-content length (5 + block + 12)
    11 00 00 00 00            security header: control 0x11 (authenticated), invocation counter
    <general-signing block>
    MAC (12 bytes)            GMAC, see compute_mac

Grouping header, "general-signing" (DLMS tag 0xDF)::

    DF
    09 CRA counter(8)         transaction-id: CRA flag (1 command, 2 response, 3 alert) and
                              the Originator Counter, big-endian
    08 EUI-64                 originator system title
    08 EUI-64                 recipient system title
    00 | 0C date-time(12)     absent, or a DLMS date-time (device responses)
    L other-information       message code (2) [+ supplementary remote party ID (8)
                              [+ its counter (8) [+ supplementary originator counter (8)
                              | the remote party's key agreement certificate]]]
    L payload                 the use case's APDU (DLMS, GBZ or ASN.1)
    [00 | 40 signature(64)]   ECDSA P-256 r||s over the block minus its tag, up to the end of
                              the payload. A Pre-Command has no signature field at all.

Lengths are DER-style (one byte below 0x80, else 0x81-0x83 and that many bytes). Only
the minimal form is accepted: every RTDS vector uses it, and one message having two
encodings would let framing differ where correlation compares bytes.
"""

from __future__ import annotations

import datetime as dt
import enum

import msgspec

from mmc.identifiers import Eui64, eui64_from_bytes, eui64_to_bytes
from parse_correlate.gbcs_bytes import ByteReader, GbcsError, encode_length
from parse_correlate.gbcs_mac import (
    MAC_BYTES,
    SECURITY_HEADER_BYTES,
    KeyAgreement,
    compute_mac,
    message_key,
)

GENERAL_CIPHERING_TAG = 0xDD
GENERAL_SIGNING_TAG = 0xDF
GENERAL_BLOCK_TRANSFER_TAG = 0xE0
MAX_MESSAGE_BYTES = 1 << 20  # far above any GBCS message; bounds work on hostile input
SIGNATURE_BYTES = 64
SECURITY_CONTROL_AUTHENTICATED = 0x11
DATE_TIME_BYTES = 12
COUNTER_BYTES = 8
_EMPTY_CIPHERING_FIELDS = bytes(6)
# Lengths of other-information with the optional supplementary fields (GBCS 4.3.1.4).
_OTHER_INFO_CODE_ONLY = 2
_OTHER_INFO_WITH_PARTY = 10
_OTHER_INFO_WITH_PARTY_COUNTER = 18
_OTHER_INFO_WITH_ORIGINATOR_COUNTER = 26


class BlockKind(enum.StrEnum):
    GENERAL_CIPHERING = "general-ciphering"  # 0xDD MAC header around a signing block
    GENERAL_SIGNING = "general-signing"  # 0xDF signing block on its own


class Cra(enum.IntEnum):
    COMMAND = 1
    RESPONSE = 2
    ALERT = 3


class GroupingHeader(msgspec.Struct, frozen=True):
    """The general-signing header: who sent what to whom, and which use case it is."""

    cra: Cra
    originator_counter: int
    originator: Eui64
    recipient: Eui64
    message_code: int
    date_time: bytes | None = None  # 12-byte DLMS date-time, see decode_dlms_datetime
    supplementary: bytes = b""  # other-information after the message code, as sent

    @property
    def transaction_id(self) -> bytes:
        return bytes([self.cra]) + self.originator_counter.to_bytes(COUNTER_BYTES, "big")

    @property
    def supplementary_remote_party(self) -> Eui64 | None:
        raw = self.supplementary[:8]
        return eui64_from_bytes(raw) if len(raw) == 8 else None

    @property
    def supplementary_remote_party_counter(self) -> int | None:
        raw = self.supplementary[8:16]
        return int.from_bytes(raw, "big") if len(raw) == 8 else None

    @property
    def supplementary_originator_counter(self) -> int | None:
        if len(self.supplementary) != _OTHER_INFO_WITH_ORIGINATOR_COUNTER - 2:
            return None
        return int.from_bytes(self.supplementary[16:24], "big")

    @property
    def supplementary_certificate(self) -> bytes | None:
        extra = len(self.supplementary) + 2
        return self.supplementary[16:] if extra > _OTHER_INFO_WITH_ORIGINATOR_COUNTER else None


class GbcsMessage(msgspec.Struct, frozen=True):
    kind: BlockKind
    header: GroupingHeader
    payload: bytes  # the APDU
    # None: no signature field (a Pre-Command); b"": length 0 (unsigned); else 64 bytes r||s.
    signature: bytes | None
    security_header: bytes | None  # general-ciphering only
    mac: bytes | None  # general-ciphering only
    block: bytes  # the general-signing block exactly as received (tag to signature)
    signed_length: int  # block[1:signed_length] is what the signature covers

    @property
    def signed_data(self) -> bytes:
        return self.block[1 : self.signed_length]

    @property
    def invocation_counter(self) -> int:
        header = self.security_header
        return int.from_bytes(header[1:SECURITY_HEADER_BYTES], "big") if header else 0

    @property
    def unsigned_block(self) -> bytes:
        """The block up to the end of the payload: a Pre-Command's bytes."""
        return self.block[: self.signed_length]


def parse_message(data: bytes) -> GbcsMessage:
    """Parse one GBCS message; GbcsError for anything malformed, nothing else."""
    if len(data) > MAX_MESSAGE_BYTES:
        raise GbcsError(f"message of {len(data)} bytes exceeds {MAX_MESSAGE_BYTES}")
    if not data:
        raise GbcsError("empty message")
    tag = data[0]
    if tag == GENERAL_CIPHERING_TAG:
        return _parse_general_ciphering(data)
    if tag == GENERAL_SIGNING_TAG:
        return _parse_signing_block(data, BlockKind.GENERAL_SIGNING, None, None)
    if tag == GENERAL_BLOCK_TRANSFER_TAG:
        raise GbcsError("general block transfer (0xE0) is not supported: reassemble first")
    raise GbcsError(f"unknown GBCS block tag 0x{tag:02X} (expected 0xDD or 0xDF)")


def _parse_general_ciphering(data: bytes) -> GbcsMessage:
    reader = ByteReader(data, pos=1)
    if reader.take(6, "general-ciphering fields") != _EMPTY_CIPHERING_FIELDS:
        raise GbcsError("general-ciphering fields before the content must be empty in GBCS")
    content_length = reader.length("ciphered content")
    if content_length != reader.remaining:
        raise GbcsError(
            f"ciphered content length {content_length} but {reader.remaining} bytes follow"
        )
    security_header = reader.take(SECURITY_HEADER_BYTES, "security header")
    if security_header[0] != SECURITY_CONTROL_AUTHENTICATED:
        raise GbcsError(f"security control 0x{security_header[0]:02X} is not 0x11")
    if reader.remaining < MAC_BYTES:
        raise GbcsError("general-ciphering content too short for its MAC")
    block = data[reader.pos : len(data) - MAC_BYTES]
    if not block or block[0] != GENERAL_SIGNING_TAG:
        raise GbcsError("general-ciphering content is not a general-signing block")
    message = _parse_signing_block(
        block, BlockKind.GENERAL_CIPHERING, security_header, data[-MAC_BYTES:]
    )
    if message.signature is None:
        raise GbcsError("a MACed block must carry a signature length (0 when unsigned)")
    return message


def _parse_signing_block(
    block: bytes, kind: BlockKind, security_header: bytes | None, mac: bytes | None
) -> GbcsMessage:
    reader = ByteReader(block, pos=1)
    header = _parse_grouping_header(reader)
    payload = reader.octets("payload")
    signed_length = reader.pos
    signature = _parse_signature(reader)
    return GbcsMessage(
        kind=kind,
        header=header,
        payload=payload,
        signature=signature,
        security_header=security_header,
        mac=mac,
        block=block,
        signed_length=signed_length,
    )


def _parse_grouping_header(reader: ByteReader) -> GroupingHeader:
    transaction = reader.octets("transaction-id")
    if len(transaction) != 1 + COUNTER_BYTES:
        raise GbcsError(f"transaction-id must be 9 bytes, got {len(transaction)}")
    if transaction[0] not in (1, 2, 3):
        raise GbcsError(f"CRA flag {transaction[0]} is not 1, 2 or 3")
    originator = _system_title(reader, "originator system title")
    recipient = _system_title(reader, "recipient system title")
    date_time = reader.octets("date-time")
    if len(date_time) not in (0, DATE_TIME_BYTES):
        raise GbcsError(f"date-time must be absent or 12 bytes, got {len(date_time)}")
    other = reader.octets("other-information")
    _check_other_information_length(len(other))
    return GroupingHeader(
        cra=Cra(transaction[0]),
        originator_counter=int.from_bytes(transaction[1:], "big"),
        originator=originator,
        recipient=recipient,
        message_code=int.from_bytes(other[:2], "big"),
        date_time=date_time or None,
        supplementary=other[2:],
    )


def _system_title(reader: ByteReader, what: str) -> Eui64:
    raw = reader.octets(what)
    if len(raw) != 8:
        raise GbcsError(f"{what} must be an 8-byte EUI-64, got {len(raw)} bytes")
    return eui64_from_bytes(raw)


def _check_other_information_length(length: int) -> None:
    allowed = (
        _OTHER_INFO_CODE_ONLY,
        _OTHER_INFO_WITH_PARTY,
        _OTHER_INFO_WITH_PARTY_COUNTER,
        _OTHER_INFO_WITH_ORIGINATOR_COUNTER,
    )
    if length not in allowed and length <= _OTHER_INFO_WITH_ORIGINATOR_COUNTER:
        raise GbcsError(f"other-information of {length} bytes matches no GBCS layout")


def _parse_signature(reader: ByteReader) -> bytes | None:
    if reader.remaining == 0:
        return None
    length = reader.length("signature")
    if length not in (0, SIGNATURE_BYTES):
        raise GbcsError(f"signature must be 0 or 64 bytes, got {length}")
    signature = reader.take(length, "signature")
    if reader.remaining:
        raise GbcsError(f"{reader.remaining} unexpected bytes after the signature")
    return signature


def encode_grouping_header(header: GroupingHeader, payload_length: int) -> bytes:
    if not 0 <= header.originator_counter < 1 << 64:
        raise GbcsError("originator counter must be a uint64")
    if not 0 <= header.message_code <= 0xFFFF:
        raise GbcsError("message code must fit in two bytes")
    _check_other_information_length(2 + len(header.supplementary))
    date_time = header.date_time or b""
    if len(date_time) not in (0, DATE_TIME_BYTES):
        raise GbcsError("date-time must be absent or 12 bytes")
    other = header.message_code.to_bytes(2, "big") + header.supplementary
    return b"".join(
        (
            bytes([GENERAL_SIGNING_TAG, 1 + COUNTER_BYTES]),
            header.transaction_id,
            b"\x08" + eui64_to_bytes(header.originator),
            b"\x08" + eui64_to_bytes(header.recipient),
            encode_length(len(date_time)) + date_time,
            encode_length(len(other)) + other,
            encode_length(payload_length),
        )
    )


def encode_general_signing(
    header: GroupingHeader, payload: bytes, signature: bytes | None = b""
) -> bytes:
    """The signing block; signature None leaves out the field (the Pre-Command form)."""
    block = encode_grouping_header(header, len(payload)) + payload
    if signature is None:
        return block
    if len(signature) not in (0, SIGNATURE_BYTES):
        raise GbcsError("signature must be 0 or 64 bytes")
    return block + bytes([len(signature)]) + signature


def encode_general_ciphering(
    block: bytes,
    header: GroupingHeader,
    mac_keys: KeyAgreement | None,
    invocation_counter: int = 0,
) -> bytes:
    """Wrap a signing block in the MAC header. Without keys the MAC is 12 zero bytes:
    a placeholder for whoever holds the key (the DCC's Access Control Broker).
    The invocation counter is zero in every RTDS message: the transaction-id already
    makes each message key unique."""
    if not 0 <= invocation_counter < 1 << 32:
        raise GbcsError("invocation counter must be a uint32")
    security_header = bytes([SECURITY_CONTROL_AUTHENTICATED]) + invocation_counter.to_bytes(
        4, "big"
    )
    if mac_keys is None:
        mac = bytes(MAC_BYTES)
    else:
        key = message_key(mac_keys, header.originator, header.transaction_id, header.recipient)
        mac = compute_mac(block, header.originator, security_header, key)
    content_length = SECURITY_HEADER_BYTES + len(block) + MAC_BYTES
    return b"".join(
        (
            bytes([GENERAL_CIPHERING_TAG]),
            _EMPTY_CIPHERING_FIELDS,
            encode_length(content_length),
            security_header,
            block,
            mac,
        )
    )


def build_message(
    header: GroupingHeader,
    payload: bytes,
    *,
    signature: bytes | None = b"",
    ciphering: bool = True,
    mac_keys: KeyAgreement | None = None,
    invocation_counter: int = 0,
) -> bytes:
    """Frame a GBCS message: the signing block, in a MAC header unless ciphering=False."""
    block = encode_general_signing(header, payload, signature)
    if not ciphering:
        return block
    if signature is None:
        raise GbcsError("a MACed message needs a signature field (b'' when unsigned)")
    return encode_general_ciphering(block, header, mac_keys, invocation_counter)


def decode_dlms_datetime(raw: bytes) -> dt.datetime | None:
    """A 12-byte DLMS date-time as an aware UTC datetime; None when any date or time
    field is 'not specified' (GBCS keeps device clocks in UTC, deviation unspecified)."""
    if len(raw) != DATE_TIME_BYTES:
        raise GbcsError("a DLMS date-time is 12 bytes")
    year = int.from_bytes(raw[0:2], "big")
    month, day, _weekday, hour, minute, second, hundredths = raw[2:9]
    if 0xFF in (month, day, hour, minute, second) or year == 0xFFFF:
        return None
    microseconds = 0 if hundredths == 0xFF else hundredths * 10_000
    try:
        return dt.datetime(year, month, day, hour, minute, second, microseconds, tzinfo=dt.UTC)
    except ValueError as exc:
        raise GbcsError(f"invalid DLMS date-time {raw.hex()}: {exc}") from exc


def dlms_clock_status(raw: bytes) -> int | None:
    """The clock-status octet of a DLMS date-time; None when 'not specified' (0xFF)."""
    status = raw[11]
    return None if status == 0xFF else status


def verify_mac(message: GbcsMessage, keys: KeyAgreement) -> bool:
    """Check a general-ciphering message's MAC with one end's key agreement key pair."""
    if message.mac is None or message.security_header is None:
        raise GbcsError("message has no MAC to verify")
    header = message.header
    key = message_key(keys, header.originator, header.transaction_id, header.recipient)
    expected = compute_mac(message.block, header.originator, message.security_header, key)
    return expected == message.mac
