"""Service Request -> GBCS command (sans-IO): the use case's payload, framed by GBCS.

REAL payloads, equal byte for byte to the DCC's RTDS 4.5.0 command vectors for the same
header inputs (tests/test_commands.py), MAC included when the Access Control Broker's
key agreement key is given:

- SRV 4.1.1 Read Instantaneous Import Registers, ESME -> ECS17b (message code 0x0027):
  DLMS action get_protected_attributes on the Data Protection object, asking for the
  import registers object encrypted for the User.
- SRV 11.2 Read Firmware Version, ESME -> ECS52 (0x0059): DLMS get of the firmware
  version object.

Every other SRV, and these SRVs on other device types, gets a SIMULATED payload: the
ASCII text "SIMULATED <variant> <device type>" in a correctly framed message, marked
`simulated=True` in the result. Its message code is the real use case's where the
P&C use-case table names one use case for the SRV and device type (else 0xFFFF). It
lets the gateway, simulator and benches run every SRV end to end; a real device would
reject it.

Both use cases follow the "DSP" future-dated pattern: the DCC holds the request and
sends an immediate command at the ExecutionDateTime, so the command never carries it;
`not_before` tells the dispatcher when to send.
"""

from __future__ import annotations

import datetime as dt
import enum

import msgspec

from mmc.identifiers import RequestId, eui64_to_bytes
from parse_correlate.decode.usecases import use_case_for_device
from parse_correlate.gbcs import (
    Cra,
    GroupingHeader,
    build_message,
    encode_general_ciphering,
    parse_message,
)
from parse_correlate.gbcs_bytes import GbcsError
from parse_correlate.gbcs_codes import MESSAGE_CODES
from parse_correlate.gbcs_mac import KeyAgreement

SIMULATED_MESSAGE_CODE = 0xFFFF  # for SRVs whose use case this module does not know


class DeviceType(enum.StrEnum):
    ESME = "ESME"
    GSME = "GSME"
    CHF = "CHF"
    GPF = "GPF"
    PPMID = "PPMID"
    HCALCS = "HCALCS"


class CommandFacts(msgspec.Struct, frozen=True):
    """What the command needs beyond the RequestID: from the request body and inventory."""

    device_type: DeviceType
    execution_date_time: dt.datetime | None = None  # DUIS ExecutionDateTime


class BuiltCommand(msgspec.Struct, frozen=True):
    srv_variant: str
    use_case: str | None  # "ECS17b"; None when not known here
    message_code: int
    gbcs: bytes
    simulated: bool  # True: the payload is a placeholder, not the use case's encoding
    pre_command: bool  # True: unsigned Pre-Command (critical SRV) for the User to sign
    mac_placeholder: bool  # True: MAC trailer is zeros, no ACB key was given
    not_before: dt.datetime | None  # hold until then (DSP-scheduled future-dated request)


class CommandError(ValueError):
    """The command cannot be built from these inputs (the caller's fault)."""


# (SRV variant, device type) -> GBCS use case, for the SRVs this module knows.
_USE_CASES: dict[tuple[str, DeviceType], str] = {
    ("4.1.1", DeviceType.ESME): "ECS17b",
    ("4.1.1", DeviceType.GSME): "GCS13a",
    ("11.2", DeviceType.ESME): "ECS52",
    ("11.2", DeviceType.CHF): "ECS52",
    ("11.2", DeviceType.GSME): "GCS38",
    ("11.2", DeviceType.PPMID): "CS08",
    ("11.2", DeviceType.HCALCS): "CS08",
}

# ---- DLMS A-XDR encoding: only what the real payloads use -----------------------------

_ACCESS_REQUEST = 0xD9
# Top byte of long-invoke-id-and-priority in every RTDS command; the low 24 bits are the
# low 24 bits of the originator counter.
_INVOKE_FLAGS = 0x20000000
_GET, _ACTION = 0x01, 0x03
_NULL, _ARRAY, _STRUCTURE, _OCTETS, _INTEGER, _LONG_UNSIGNED, _ENUM = (
    0x00, 0x01, 0x02, 0x09, 0x0F, 0x12, 0x16,
)  # fmt: skip
_CLASS_DATA, _CLASS_DATA_PROTECTION = 1, 30
_OBIS_DATA_PROTECTION = bytes([0, 0, 43, 2, 8, 255])  # 0-0:43.2.8.255
_OBIS_IMPORT_REGISTERS = bytes([0, 0, 94, 44, 34, 10])  # 0-0:94.44.34.10 (GBCS object)
_OBIS_FIRMWARE_VERSION = bytes([0, 0, 0, 2, 1, 255])  # 0-0:0.2.1.255
_GET_PROTECTED_ATTRIBUTES = 1
_PROTECTION_AUTHENTICATED_ENCRYPTED = 2
_KEY_INFO_AGREED_KEY = 2
_AGREED_KEY_PARAMETERS = b"\x02"  # C(0e, 2s ECC CDH)
# First octet of the protection transaction-id in every RTDS ECS17b; the rest is the counter.
_PROTECTION_TRANSACTION_PREFIX = b"\x04"


def _octets(value: bytes) -> bytes:
    if len(value) > 0x7F:
        raise CommandError("octet string too long for this encoder")
    return bytes([_OCTETS, len(value)]) + value


def _structure(*items: bytes) -> bytes:
    return bytes([_STRUCTURE, len(items)]) + b"".join(items)


def _array(*items: bytes) -> bytes:
    return bytes([_ARRAY, len(items)]) + b"".join(items)


def _long_unsigned(value: int) -> bytes:
    return bytes([_LONG_UNSIGNED]) + value.to_bytes(2, "big")


def _descriptor(choice: int, class_id: int, obis: bytes, member: int) -> bytes:
    return bytes([choice]) + class_id.to_bytes(2, "big") + obis + bytes([member])


def _access_request(counter: int, specification: bytes, data: bytes) -> bytes:
    invoke = _INVOKE_FLAGS | (counter & 0xFFFFFF)
    # date-time absent (empty octet string); one specification, one data item.
    return b"".join(
        (bytes([_ACCESS_REQUEST]), invoke.to_bytes(4, "big"), b"\x00", b"\x01", specification,
         b"\x01", data)
    )  # fmt: skip


# The parts of an ECS17b payload no request changes, encoded once at import.
_ECS17B_WANTED_OBJECTS = _array(
    _structure(
        _long_unsigned(_CLASS_DATA),
        _octets(_OBIS_IMPORT_REGISTERS),
        bytes([_INTEGER, 2]),  # attribute 2: value
        _long_unsigned(0),  # data index: the whole value
        _structure(bytes([_ENUM, 0]), bytes([_NULL])),  # no restriction
    )
)
_ECS17B_KEY_INFO = _structure(
    bytes([_ENUM, _KEY_INFO_AGREED_KEY]),
    _structure(_octets(_AGREED_KEY_PARAMETERS), _octets(b"")),
)
_ECS17B_SPECIFICATION = _descriptor(
    _ACTION, _CLASS_DATA_PROTECTION, _OBIS_DATA_PROTECTION, _GET_PROTECTED_ATTRIBUTES
)


def _ecs17b_payload(header: GroupingHeader) -> bytes:
    transaction_id = _PROTECTION_TRANSACTION_PREFIX + header.originator_counter.to_bytes(8, "big")
    protection = _structure(
        bytes([_ENUM, _PROTECTION_AUTHENTICATED_ENCRYPTED]),
        _structure(
            _octets(transaction_id),
            _octets(eui64_to_bytes(header.originator)),
            _octets(eui64_to_bytes(header.recipient)),
            _octets(b""),  # other information
            _ECS17B_KEY_INFO,
        ),
    )
    data = _structure(_ECS17B_WANTED_OBJECTS, _array(protection))
    return _access_request(header.originator_counter, _ECS17B_SPECIFICATION, data)


def _ecs52_payload(header: GroupingHeader) -> bytes:
    specification = _descriptor(_GET, _CLASS_DATA, _OBIS_FIRMWARE_VERSION, 2)
    return _access_request(header.originator_counter, specification, bytes([_NULL]))


def _table_use_case(srv_variant: str, device_type: DeviceType) -> str | None:
    """The GBCS use case of the SRV for this device type from the P&C use-case table,
    when only one fits: the command then carries its real message code (its payload
    stays simulated), so the device's answer and its correlation are real."""
    use_case = use_case_for_device(srv_variant, device_type)
    return use_case.name if use_case is not None and use_case.name in MESSAGE_CODES else None


_REAL_PAYLOADS = {
    ("4.1.1", DeviceType.ESME): _ecs17b_payload,
    ("11.2", DeviceType.ESME): _ecs52_payload,
}


def build_command(
    srv_variant: str,
    request_id: RequestId,
    facts: CommandFacts,
    *,
    originator_counter: int,
    now: dt.datetime,
    critical: bool = False,
    mac_keys: KeyAgreement | None = None,
) -> BuiltCommand:
    """The GBCS command for one Service Request, from the User (RequestID originator) to
    the device (RequestID target).

    A critical SRV yields the Pre-Command: the signing block without a signature field
    or MAC header, for the User to sign (seal_signed_pre_command finishes it). Otherwise
    the command is MACed with mac_keys (ACB private key, device public key), or carries
    a zero MAC placeholder without them."""
    if not 0 <= originator_counter < 1 << 64:
        raise CommandError(f"originator counter {originator_counter} is not a uint64")
    key = (srv_variant, facts.device_type)
    use_case = _USE_CASES.get(key) or _table_use_case(srv_variant, facts.device_type)
    header = GroupingHeader(
        cra=Cra.COMMAND,
        originator_counter=originator_counter,
        originator=request_id.originator,
        recipient=request_id.target,
        message_code=MESSAGE_CODES[use_case] if use_case else SIMULATED_MESSAGE_CODE,
    )
    encoder = _REAL_PAYLOADS.get(key)
    if encoder is None:
        payload = f"SIMULATED {srv_variant} {facts.device_type}".encode("ascii")
    else:
        payload = encoder(header)
    try:
        if critical:
            gbcs = build_message(header, payload, signature=None, ciphering=False)
        else:
            gbcs = build_message(header, payload, mac_keys=mac_keys)
    except GbcsError as exc:
        raise CommandError(str(exc)) from exc
    execution = facts.execution_date_time
    return BuiltCommand(
        srv_variant=srv_variant,
        use_case=use_case,
        message_code=header.message_code,
        gbcs=gbcs,
        simulated=encoder is None,
        pre_command=critical,
        mac_placeholder=not critical and mac_keys is None,
        not_before=execution if execution is not None and execution > now else None,
    )


def seal_signed_pre_command(signed_block: bytes, mac_keys: KeyAgreement | None) -> bytes:
    """The device-bound command from a User's Signed Pre-Command: add the MAC header.
    Correlate it with its Pre-Command first (parse_correlate.correlate)."""
    message = parse_message(signed_block)
    if message.mac is not None or message.signature is None or len(message.signature) != 64:
        raise CommandError("not a signed general-signing block")
    return encode_general_ciphering(message.block, message.header, mac_keys)
