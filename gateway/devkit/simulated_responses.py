"""What the simulated devices answer: GBCS responses and alerts, as bytes (sans-IO).

- REAL shapes (learned from the RTDS 4.5.0 response vectors, checked against them in
  tests/test_simulator.py): the GBCS framing of every response (CRA response, the
  command's counter, device -> User, general-ciphering with MAC or general-signing, like
  the command); ECS52 (11.2) the DLMS access-response with the firmware version octets;
  ECS17b (4.1.1) the access-response carrying the get-protected-attributes result:
  protection parameters and the register values AES-GCM encrypted for the User, and the
  device's date-time in the header; device alerts as Generic Non Critical Alerts
  (0x1001): a DLMS data-notification with alert code and time stamp.
- REAL, made-up values: every use case gateway/devkit/simulated_use_cases.py encodes (the
  outcome of every use case whose MMC element holds only MessageSuccess, and a few reads).
- SIMULATED: every other use case's payload is the ASCII text "SIMULATED RESPONSE <code>
  <SRV> <device type>"; meter register values are random; MACs and device signatures are
  real only when a DeviceKeys is given (else a zero MAC and an empty signature field), and
  without keys the ECS17b registers are encrypted under SIMULATED_PROTECTION_KEY.

When and whether a device answers is gateway/devkit/simulator.py's business; this module
only builds what it says.
"""

from __future__ import annotations

import datetime as dt
import logging
import random
from typing import Protocol

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, utils
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from gateway.core.clock import Clock
from gateway.core.device import DeviceCommand
from gateway.devkit.simulated_use_cases import use_case_payload
from mmc.identifiers import Eui64, eui64_to_bytes
from parse_correlate.decode.usecases import use_case_for
from parse_correlate.gbcs import (
    BlockKind,
    Cra,
    GbcsMessage,
    GroupingHeader,
    build_message,
    encode_general_signing,
    parse_message,
)
from parse_correlate.gbcs_bytes import GbcsError
from parse_correlate.gbcs_codes import MESSAGE_CODES
from parse_correlate.gbcs_mac import KeyAgreement, message_key

log = logging.getLogger("duisgw.simulator")

SIMULATED_PROTECTION_KEY = bytes(16)  # ECS17b registers without DeviceKeys: not secret


class DeviceKeys(Protocol):
    """The simulated devices' private keys, where the operator has them (test PKI)."""

    def key_agreement(self, device_id: Eui64, user_id: Eui64) -> KeyAgreement | None:
        """The device's key agreement private key with the User's public key."""
        ...

    def signing_key(self, device_id: Eui64) -> ec.EllipticCurvePrivateKey | None: ...


def simulated_response(
    command: DeviceCommand,
    rng: random.Random,
    *,
    clock: Clock,
    keys: DeviceKeys | None,
    firmware_version: bytes,
) -> bytes | None:
    """The device's GBCS response; None when the device would drop the command."""
    try:
        message = parse_message(command.gbcs)
    except GbcsError as exc:
        log.warning("request_id=%s: device drops a malformed command: %s", command.request_id, exc)
        return None
    sent = message.header
    if sent.cra != Cra.COMMAND or sent.recipient != command.device_id:
        log.warning(
            "request_id=%s: device %s drops a command (CRA %s) addressed to %s",
            command.request_id,
            command.device_id,
            sent.cra.name,
            sent.recipient,
        )
        return None
    code = sent.message_code
    date_time = None
    if code == MESSAGE_CODES["ECS17b"]:
        date_time = _dlms_datetime(clock.now())
    header = GroupingHeader(
        cra=Cra.RESPONSE,
        originator_counter=sent.originator_counter,
        originator=sent.recipient,
        recipient=sent.originator,
        message_code=code,
        date_time=date_time,
    )
    payload = _payload(command, message, header, rng, keys, firmware_version, clock.now())
    return _frame(header, payload, message.kind, keys)


def simulated_alert(
    device: Eui64,
    user: Eui64,
    counter: int,
    *,
    alert_code: int,
    clock: Clock,
    keys: DeviceKeys | None,
) -> bytes:
    """A Generic Non Critical Alert from the device to a User, the device's `counter`th."""
    header = GroupingHeader(
        cra=Cra.ALERT,
        originator_counter=counter,
        originator=device,
        recipient=user,
        message_code=MESSAGE_CODES["GNCA-DLMS"],
    )
    body = _structure(
        bytes([_LONG_UNSIGNED]) + alert_code.to_bytes(2, "big"),
        _octets(_dlms_datetime(clock.now())),
    )
    notification = bytes([_DATA_NOTIFICATION]) + _invoke(counter) + b"\x00" + body
    agreement = keys.key_agreement(device, user) if keys else None
    return build_message(header, notification, mac_keys=agreement)


def _payload(
    command: DeviceCommand,
    sent: GbcsMessage,
    header: GroupingHeader,
    rng: random.Random,
    keys: DeviceKeys | None,
    firmware_version: bytes,
    now: dt.datetime,
) -> bytes:
    code = header.message_code
    invoke = _invoke_id(sent)
    if code == MESSAGE_CODES["ECS52"]:
        data = _octets(firmware_version)
        return _access_response(invoke, data, specification=_GET_SUCCESS)
    if code == MESSAGE_CODES["ECS17b"]:
        return _access_response(
            invoke, _protected_registers(header, rng, keys), specification=_ACTION_SUCCESS
        )
    use_case = use_case_for(code)
    if use_case is not None:
        payload = use_case_payload(
            use_case, command.srv_variant, invoke, rng, firmware_version, now
        )
        if payload is not None:
            return payload
    text = f"SIMULATED RESPONSE {code:04X} {command.srv_variant} {command.device_type}"
    return text.encode("ascii")


def _protected_registers(
    header: GroupingHeader, rng: random.Random, keys: DeviceKeys | None
) -> bytes:
    """ECS17b's get-protected-attributes result: the active and reactive import
    registers (Wh, varh; scaler 0), AES-GCM encrypted by the device for the User."""
    device, user = header.originator, header.recipient
    registers = _structure(
        _structure(
            bytes([_DOUBLE_LONG_UNSIGNED]) + rng.randrange(1 << 24).to_bytes(4, "big"),
            _structure(bytes([_INTEGER, 0]), bytes([_ENUM, _UNIT_WH])),
            bytes([_DOUBLE_LONG_UNSIGNED]) + rng.randrange(1 << 20).to_bytes(4, "big"),
            _structure(bytes([_INTEGER, 0]), bytes([_ENUM, _UNIT_VARH])),
        )
    )
    transaction_id = _PROTECTION_PREFIX + header.originator_counter.to_bytes(8, "big")
    agreement = keys.key_agreement(device, user) if keys else None
    key = (
        message_key(agreement, device, transaction_id, user)
        if agreement
        else SIMULATED_PROTECTION_KEY
    )
    iv = eui64_to_bytes(device) + bytes(4)  # invocation counter 0, as in every vector
    encryptor = Cipher(algorithms.AES(key), modes.GCM(iv)).encryptor()
    encryptor.authenticate_additional_data(bytes([_SECURITY_CONTROL_ENCRYPTED]))
    ciphertext = encryptor.update(registers) + encryptor.finalize()
    protected = bytes([_SECURITY_CONTROL_ENCRYPTED]) + bytes(4) + ciphertext
    protection = _structure(
        bytes([_ENUM, 2]),  # authenticated and encrypted
        _structure(
            _octets(transaction_id),
            _octets(eui64_to_bytes(device)),
            _octets(eui64_to_bytes(user)),
            _octets(b""),
            _structure(bytes([_ENUM, 2]), _structure(_octets(b"\x02"), _octets(b""))),
        ),
    )
    return _structure(_array(protection), _octets(protected + encryptor.tag[:12]))


def _frame(
    header: GroupingHeader, payload: bytes, kind: BlockKind, keys: DeviceKeys | None
) -> bytes:
    device, user = header.originator, header.recipient
    if kind == BlockKind.GENERAL_CIPHERING:
        agreement = keys.key_agreement(device, user) if keys else None
        return build_message(header, payload, mac_keys=agreement)
    signing_key = keys.signing_key(device) if keys else None
    if signing_key is None:
        return build_message(header, payload, ciphering=False)  # signature field empty
    unsigned = encode_general_signing(header, payload, signature=None)
    r, s = utils.decode_dss_signature(signing_key.sign(unsigned[1:], ec.ECDSA(hashes.SHA256())))
    return unsigned + b"\x40" + r.to_bytes(32, "big") + s.to_bytes(32, "big")


# ---- DLMS A-XDR: just what the real response shapes need -------------------------------

_ACCESS_REQUEST, _ACCESS_RESPONSE, _DATA_NOTIFICATION = 0xD9, 0xDA, 0x0F
_ARRAY, _STRUCTURE, _DOUBLE_LONG_UNSIGNED, _OCTETS = 0x01, 0x02, 0x06, 0x09
_INTEGER, _LONG_UNSIGNED, _ENUM = 0x0F, 0x12, 0x16
_UNIT_WH, _UNIT_VARH = 30, 32  # DLMS unit enumeration
_INVOKE_FLAGS = 0x20000000  # as every RTDS message: the low 24 bits carry the counter
_GET_SUCCESS, _ACTION_SUCCESS = b"\x01\x00", b"\x03\x00"  # access-response-get/action, ok
_PROTECTION_PREFIX = b"\x04"  # first octet of the protection transaction-id, as commands
_SECURITY_CONTROL_ENCRYPTED = 0x31


def _octets(value: bytes) -> bytes:
    if len(value) > 0x7F:
        raise ValueError("octet string too long for this encoder")
    return bytes([_OCTETS, len(value)]) + value


def _structure(*items: bytes) -> bytes:
    return bytes([_STRUCTURE, len(items)]) + b"".join(items)


def _array(*items: bytes) -> bytes:
    return bytes([_ARRAY, len(items)]) + b"".join(items)


def _invoke(counter: int) -> bytes:
    return (_INVOKE_FLAGS | (counter & 0xFFFFFF)).to_bytes(4, "big")


def _invoke_id(sent: GbcsMessage) -> bytes:
    """The command's long-invoke-id-and-priority, which the response echoes."""
    payload = sent.payload
    if len(payload) >= 5 and payload[0] == _ACCESS_REQUEST:
        return payload[1:5]
    return _invoke(sent.header.originator_counter)


def _access_response(invoke: bytes, data: bytes, *, specification: bytes) -> bytes:
    # tag, invoke id, date-time absent, access-request-specification absent, one data
    # item, one access-response-specification.
    return bytes([_ACCESS_RESPONSE]) + invoke + b"\x00\x00\x01" + data + b"\x01" + specification


def _dlms_datetime(when: dt.datetime) -> bytes:
    """12-byte DLMS date-time in UTC, laid out as the RTDS devices write it: day of week
    and deviation not specified, clock status not specified."""
    t = when.astimezone(dt.UTC)
    return b"".join(
        (
            t.year.to_bytes(2, "big"),
            bytes([t.month, t.day, 0xFF, t.hour, t.minute, t.second, t.microsecond // 10_000]),
            b"\x80\x00\xff",
        )
    )
