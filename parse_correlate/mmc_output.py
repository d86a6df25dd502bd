"""GBCS response/alert -> MMC output XML (`ra:GBCSResponse`), per DUIS version (sans-IO).

The structure is the MMC schema's (`MMC_Schema_V5.x.xsd`, namespace ResponseAndAlert):
Header (device -> User identifiers, counter, message code, SRV, device timestamp) and a
Body holding a ResponseMessage or a DeviceAlertMessage.

Decoded use cases (DLMS payloads, layout learned from gbcs-parser src/dlms.ts and checked
on the RTDS 4.5.0 vectors):
- ECS17b (SRV 4.1.1, Read Instantaneous Import Registers). The device encrypts the
  registers (DLMS "protected attributes", AES-GCM under a key agreed between device and
  User). Without the User's key agreement key the output carries the whole message as
  `GBCSData format="encrypted"` for a second pass, as the MMC schema foresees; with it,
  the registers are decrypted into `ReadInstantaneousImportRegistersRsp`.
- ECS52 (SRV 11.2, Read Firmware Version): `ReadFirmwareVersionRsp/FirmwareVersion`, the
  device's octet string in upper-case hex.
Any other message code gets the header and the message as `GBCSData format="plain"`
(undecoded), which every version's schema accepts. Device failures go to
`DebugInfo/COSEMDebug` with their DLMS result codes.

Versions differ only where their schemas do: 5.0's header Timestamp has no ClockStatus.
"""

from __future__ import annotations

import base64
from collections.abc import Callable
from typing import NamedTuple, TypeAlias

import msgspec
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from lxml import etree

from mmc.identifiers import eui64_from_bytes
from parse_correlate.gbcs import (
    MESSAGE_CODES,
    ByteReader,
    Cra,
    GbcsError,
    GbcsMessage,
    KeyAgreement,
    decode_dlms_datetime,
    dlms_clock_status,
    message_code_name,
    message_key,
    parse_message,
)

RA_NAMESPACE = "http://www.dccinterface.co.uk/ResponseAndAlert"
SUPPORTED_VERSIONS = ("5.0", "5.1", "5.3", "5.4")
_VERSIONS_WITH_CLOCK_STATUS = frozenset({"5.1", "5.3", "5.4"})
MAX_DLMS_DEPTH = 16  # nesting limit: hostile payloads must not exhaust the stack
_ACCESS_RESPONSE_TAG = 0xDA
_GCM_TAG_BYTES = 12
_UNIT_WH = 30  # DLMS unit enumeration: the only active-energy unit GBCS allows
_UNIT_VARH = 32

DlmsData: TypeAlias = "bool | int | bytes | str | tuple[DlmsData, ...] | list[DlmsData] | None"


class MmcOutputError(GbcsError):
    """The payload is malformed or not what its message code promises (the device's fault)."""


class UnsupportedVersionError(LookupError):
    """A DUIS version this P&C has no handler for."""


class AccessResult(msgspec.Struct, frozen=True):
    kind: str  # "get", "set" or "action": which DLMS result enumeration the code is from
    code: int

    @property
    def success(self) -> bool:
        return self.code == 0


class AccessResponse(msgspec.Struct, frozen=True):
    data: list[DlmsData]
    results: list[AccessResult]


# ---- DLMS A-XDR ------------------------------------------------------------------------

_FIXED_INTS: dict[int, tuple[int, bool]] = {  # tag -> (size, signed)
    5: (4, True), 6: (4, False), 15: (1, True), 16: (2, True), 17: (1, False),
    18: (2, False), 20: (8, True), 21: (8, False), 22: (1, False),
}  # fmt: skip
_FIXED_OCTETS = {13: 1, 23: 4, 24: 8, 25: 12, 26: 5, 27: 4}  # bcd, floats, date-time, date, time


def decode_dlms_data(reader: ByteReader, depth: int = 0) -> DlmsData:
    """One DLMS Data value: structures become tuples, arrays lists, enums ints."""
    if depth > MAX_DLMS_DEPTH:
        raise MmcOutputError(f"DLMS data nested deeper than {MAX_DLMS_DEPTH}")
    tag = reader.byte("DLMS data tag")
    if tag == 0:
        return None
    if tag in (1, 2):
        items = [decode_dlms_data(reader, depth + 1) for _ in range(reader.length("DLMS count"))]
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
    raise MmcOutputError(f"unsupported DLMS data type {tag}")


def decode_access_response(payload: bytes) -> AccessResponse:
    """A DLMS access-response: invoke id, date-time, list of data, list of results."""
    reader = ByteReader(payload)
    if reader.byte("access-response tag") != _ACCESS_RESPONSE_TAG:
        raise MmcOutputError("payload is not a DLMS access-response (0xDA)")
    reader.take(4, "long-invoke-id-and-priority")
    reader.octets("access-response date-time")
    if reader.byte("access-request-specification flag") != 0:
        raise MmcOutputError("access-response echoing its request is not supported")
    data = [decode_dlms_data(reader) for _ in range(reader.length("list of data"))]
    results = [_decode_result(reader) for _ in range(reader.length("list of results"))]
    if reader.remaining:
        raise MmcOutputError(f"{reader.remaining} bytes after the access-response")
    if len(results) != len(data):
        raise MmcOutputError("access-response has different numbers of data and results")
    return AccessResponse(data=data, results=results)


def _decode_result(reader: ByteReader) -> AccessResult:
    choice = reader.byte("access-response-specification")
    kinds = {1: "get", 2: "set", 3: "action"}
    if choice not in kinds:
        raise MmcOutputError(f"unknown access-response-specification choice {choice}")
    return AccessResult(kind=kinds[choice], code=reader.byte("access result"))


# DLMS data-access-result / action-result codes -> the MMC schema's StatusCOSEM values.
_COMMON_RESULTS = {
    0: "success", 1: "hardware-fault", 2: "temporary-failure", 3: "read-write-denied",
    4: "object-undefined", 9: "object-class-inconsistent", 11: "object-unavailable",
    12: "type-unmatched", 13: "scope-of-access-violated", 14: "data-block-unavailable",
    250: "other-reason",
}  # fmt: skip
_DATA_ACCESS_RESULTS = _COMMON_RESULTS | {
    15: "long-get-aborted", 16: "no-long-get-in-progress", 17: "long-set-aborted",
    18: "no-long-set-in-progress", 19: "data-block-number-invalid",
}  # fmt: skip
_ACTION_RESULTS = _COMMON_RESULTS | {15: "long-action-aborted", 16: "no-long-action-in-progress"}


# ---- protected attributes (ECS17b) ------------------------------------------------------


def decrypt_protected_attributes(value: DlmsData, keys: KeyAgreement) -> DlmsData:
    """Decrypt a get_protected_attributes result: (protection parameters, ciphertext).

    The key is agreed for the transaction-id and system titles the protection parameters
    name; the IV is the originator's title and the invocation counter; the additional data
    is the security control byte (as gbcs-parser's decryptPayloadWithKey does)."""
    match value:
        case ([(2, (bytes() as transaction_id, bytes() as originator, bytes() as recipient, *_))],
              bytes() as blob):  # fmt: skip
            pass  # protection type 2: authenticated and encrypted, the only one GBCS uses
        case _:
            raise MmcOutputError("protected attributes are not (parameters, ciphertext)")
    if len(originator) != 8 or len(recipient) != 8 or len(blob) < 5 + _GCM_TAG_BYTES:
        raise MmcOutputError("protection parameters or ciphertext have the wrong size")
    key = message_key(
        keys, eui64_from_bytes(originator), transaction_id, eui64_from_bytes(recipient)
    )
    iv = originator + blob[1:5]
    decryptor = Cipher(
        algorithms.AES(key), modes.GCM(iv, blob[-_GCM_TAG_BYTES:], _GCM_TAG_BYTES)
    ).decryptor()
    decryptor.authenticate_additional_data(blob[:1])
    try:
        plain = decryptor.update(blob[5:-_GCM_TAG_BYTES]) + decryptor.finalize()
    except InvalidTag as exc:
        raise MmcOutputError("protected attributes fail authentication with these keys") from exc
    reader = ByteReader(plain)
    decoded = decode_dlms_data(reader)
    if reader.remaining:
        raise MmcOutputError("bytes after the decrypted DLMS data")
    return decoded


# ---- XML --------------------------------------------------------------------------------


def _q(name: str) -> str:
    return f"{{{RA_NAMESPACE}}}{name}"


def _sub(parent: etree._Element, name: str, text: str | None = None) -> etree._Element:
    element = etree.SubElement(parent, _q(name))
    if text is not None:
        element.text = text
    return element


class _Source(NamedTuple):
    """What a renderer works from: the message as parsed and as received."""

    message: GbcsMessage
    raw: bytes
    keys: KeyAgreement | None


_Renderer: TypeAlias = Callable[[etree._Element, _Source], None]


class _Decoder(NamedTuple):
    service_reference: str
    service_reference_variant: str
    render: _Renderer


def _render_header(root: etree._Element, source: _Source, version: str) -> None:
    header = source.message.header
    element = _sub(root, "Header")
    _sub(element, "BusinessOriginatorID", header.originator)
    _sub(element, "BusinessTargetID", header.recipient)
    _sub(element, "OriginatorCounter", str(header.originator_counter))
    if (party := header.supplementary_remote_party) is not None:
        _sub(element, "SupplementaryRemotePartyID", party)
    if (party_counter := header.supplementary_remote_party_counter) is not None:
        _sub(element, "SupplementaryRemotePartyCounter", str(party_counter))
    if (originator_counter := header.supplementary_originator_counter) is not None:
        _sub(element, "SupplementaryOriginatorCounter", str(originator_counter))
    _sub(element, "GBCSHexadecimalMessageCode", f"{header.message_code:04X}")
    decoder = _DECODERS.get(header.message_code)
    if decoder is not None and header.cra is Cra.RESPONSE:
        _sub(element, "ServiceReference", decoder.service_reference)
        _sub(element, "ServiceReferenceVariant", decoder.service_reference_variant)
    if header.date_time is not None:
        _render_timestamp(element, header.date_time, version)


def _render_timestamp(parent: etree._Element, raw: bytes, version: str) -> None:
    moment = decode_dlms_datetime(raw)
    if moment is None:
        return  # a device clock field 'not specified': no timestamp beats a made-up one
    text = moment.strftime("%Y-%m-%dT%H:%M:%S")
    if moment.microsecond:
        text += f".{moment.microsecond // 10_000:02d}"
    timestamp = _sub(parent, "Timestamp", text + "Z")
    status = dlms_clock_status(raw)
    if version in _VERSIONS_WITH_CLOCK_STATUS and status is not None:
        # DLMS clock status bit 0 'invalid value', bit 1 'doubtful value'.
        label = "invalid" if status & 0x01 else "unreliable" if status & 0x02 else "reliable"
        timestamp.set("ClockStatus", label)


def _render_gbcs_data(parent: etree._Element, source: _Source, *, encrypted: bool) -> None:
    # The whole message, so that a second pass has the header it needs to agree the key.
    element = _sub(parent, "GBCSData", base64.b64encode(source.raw).decode("ascii"))
    element.set("format", "encrypted" if encrypted else "plain")
    element.set("sequence", "0")
    name = message_code_name(source.message.header.message_code) or "GBCSMessage"
    element.set("name", name)
    element.set("type", "gbcs")


def _render_debug(parent: etree._Element, results: list[AccessResult]) -> None:
    if all(result.success for result in results):
        return
    debug = _sub(_sub(parent, "DebugInfo"), "COSEMDebug")
    for position, result in enumerate(results, start=1):
        response = _sub(debug, "COSEMResponse")
        response.set("ResponseCode", str(result.code))
        response.set("Position", str(position))
        if result.kind == "action":
            text = _ACTION_RESULTS.get(result.code, "response-code-not-known")
            _sub(response, "ActionResult", text)
        else:
            text = _DATA_ACCESS_RESULTS.get(result.code, "response-code-not-known")
            _sub(response, "DataAccessResult", text)


def _smets_response(parent: etree._Element, name: str, success: bool) -> etree._Element:
    response = _sub(_sub(parent, "SMETSData"), name)
    response.set("MessageSuccess", "true" if success else "false")
    return response


def _single_result(source: _Source, kind: str) -> tuple[DlmsData, AccessResult]:
    access = decode_access_response(source.message.payload)
    if len(access.results) != 1 or access.results[0].kind != kind:
        raise MmcOutputError(f"expected one DLMS {kind} result, got {access.results}")
    return access.data[0], access.results[0]


def _render_ecs17b(body: etree._Element, source: _Source) -> None:
    value, result = _single_result(source, "action")
    if result.success and source.keys is None:
        _render_gbcs_data(body, source, encrypted=True)
        return
    response = _smets_response(body, "ReadInstantaneousImportRegistersRsp", result.success)
    electricity = _sub(response, "Electricity")
    if result.success:
        assert source.keys is not None
        _render_import_registers(electricity, decrypt_protected_attributes(value, source.keys))
    _render_debug(body, [result])


def _render_import_registers(electricity: etree._Element, decrypted: DlmsData) -> None:
    """(active Wh, (scaler, unit), reactive varh, (scaler, unit)[, secondary active Wh])."""
    match decrypted:
        case ((int() as active, (0, int() as a_unit), int() as reactive, (0, int() as r_unit),
               *rest),) if a_unit == _UNIT_WH and r_unit == _UNIT_VARH:  # fmt: skip
            pass
        case _:
            raise MmcOutputError(f"unexpected import register layout {decrypted!r:.200}")
    _render_register(electricity, "ActiveImportRegister", "ActiveEnergyUnit", "Wh", active)
    _render_register(electricity, "ReactiveImportRegister", "ReactiveEnergyUnit", "varh", reactive)
    match rest:
        case []:
            pass
        case [int() as secondary]:  # twin-element meters add the secondary element's register
            _render_register(
                electricity, "SecondaryActiveImportRegister", "ActiveEnergyUnit", "Wh", secondary
            )
        case _:
            raise MmcOutputError(f"unexpected values after the import registers: {rest!r:.200}")


def _render_register(
    parent: etree._Element, name: str, unit_element: str, unit: str, value: int
) -> None:
    register = _sub(parent, name)
    _sub(register, "Value", str(value))
    _sub(register, unit_element, unit)


def _render_ecs52(body: etree._Element, source: _Source) -> None:
    value, result = _single_result(source, "get")
    response = _smets_response(body, "ReadFirmwareVersionRsp", result.success)
    if result.success:
        if not isinstance(value, bytes):
            raise MmcOutputError("firmware version is not an octet string")
        _sub(response, "FirmwareVersion", value.hex().upper())
    _render_debug(body, [result])


_DECODERS: dict[int, _Decoder] = {
    MESSAGE_CODES["ECS17b"]: _Decoder("4.1", "4.1.1", _render_ecs17b),
    MESSAGE_CODES["ECS52"]: _Decoder("11.2", "11.2", _render_ecs52),
}


def render_mmc_output(
    message: GbcsMessage, raw: bytes, version: str, keys: KeyAgreement | None = None
) -> bytes:
    """The MMC output document for one parsed response or alert."""
    if version not in SUPPORTED_VERSIONS:
        raise UnsupportedVersionError(f"no MMC output for DUIS version {version!r}")
    source = _Source(message, raw, keys)
    root = etree.Element(_q("GBCSResponse"), nsmap={"ra": RA_NAMESPACE})
    root.set("schemaVersion", version)
    _render_header(root, source, version)
    body = _sub(root, "Body")
    cra = message.header.cra
    if cra is Cra.COMMAND:
        raise MmcOutputError("a command has no MMC output: only responses and alerts")
    if cra is Cra.ALERT:
        _render_gbcs_data(_sub(body, "DeviceAlertMessage"), source, encrypted=False)
    else:
        response = _sub(body, "ResponseMessage")
        decoder = _DECODERS.get(message.header.message_code)
        if decoder is None:
            _render_gbcs_data(response, source, encrypted=False)
        else:
            decoder.render(response, source)
    return bytes(etree.tostring(root, xml_declaration=True, encoding="UTF-8"))


def parse_response(data: bytes, version: str, keys: KeyAgreement | None = None) -> bytes:
    """GBCS response or alert bytes -> MMC output XML bytes (GbcsError if malformed)."""
    return render_mmc_output(parse_message(data), data, version, keys)
