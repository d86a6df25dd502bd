"""The payloads simulated devices answer commands with, by GBCS use case (sans-IO).

So that what a User's Parse and Correlate gets from the gateway decodes like a real
meter's answer, a simulated device answers every use case the P&C use-case table
(`parse_correlate.decode.usecases`) knows, in that use case's payload form:

- outcome-only use cases (their MMC element holds MessageSuccess and nothing else):
  DLMS for electricity meters and the hub (an access-response with one successful
  action result), a ZCL Default Response with status SUCCESS for gas devices and the
  ZigBee-only use cases, an ASN.1 INTEGER 0 (success) for joins, unjoins and device
  certificate updates;
- reads with a layout here: the values in the use case's own encoding (DLMS data
  with its scaler and unit, ZCL attribute records, ASN.1), made up but well formed.

A use case outside both lists returns None, and the caller keeps its SIMULATED text.
"""

from __future__ import annotations

import datetime as dt
import random
from collections.abc import Callable

from parse_correlate.decode.usecases import RESPONSE_ELEMENTS, UseCase
from parse_correlate.mmc_output import NO_CONTENT_ELEMENTS

_ACCESS_RESPONSE = 0xDA
_DOUBLE_LONG_UNSIGNED, _OCTETS, _INTEGER, _ENUM, _STRUCTURE = 0x06, 0x09, 0x0F, 0x16, 0x02
_GET_SUCCESS, _ACTION_SUCCESS = b"\x01\x00", b"\x03\x00"
_UNIT_WH, _UNIT_VARH = 30, 32
_GBZ_PROFILE = b"\x01\x09"
_ZCL_SERVER_TO_CLIENT, _ZCL_DEFAULT_RESPONSE, _ZCL_READ_ATTRIBUTES_RESPONSE = 0x08, 0x0B, 0x01
_ZCL_UINT16, _ZCL_UINT32, _ZCL_INT32, _ZCL_ENUM8, _ZCL_OCTETS = 0x21, 0x23, 0x2B, 0x30, 0x41
_METERING, _PREPAYMENT = 0x0702, 0x0705
_DLMS_FAMILIES = ("ECS", "CCS", "DBCH", "CS01a")
_GBZ_FAMILIES = ("GCS", "CS01b", "CS10", "CS11", "PCS")
_ASN1_USE_CASES = ("GCS28", "GCS59", "GCS62")  # gas use cases with ASN.1 payloads
_ASN1_STATUS_USE_CASES = ("CS02d", "CS03A1", "CS03A2", "CS03B", "CS03C", "CS04AC", "CS04B")
_MAX_BALANCE = 10_000_000  # made-up balances, in the device's currency units

# (invoke id, rng, firmware version, now)
Encoder = Callable[[bytes, random.Random, bytes, dt.datetime], bytes]


def use_case_payload(
    use_case: UseCase,
    srv: str,
    invoke: bytes,
    rng: random.Random,
    firmware: bytes,
    now: dt.datetime,
) -> bytes | None:
    """The device's payload for this use case, or None when none is simulated."""
    name = use_case.name
    encoder = _READS.get(name)
    if encoder is not None:
        return encoder(invoke, rng, firmware, now)
    if RESPONSE_ELEMENTS.get(srv) not in NO_CONTENT_ELEMENTS:
        return None
    if name in _ASN1_STATUS_USE_CASES:
        return b"\x02\x01\x00"
    if name.startswith(_DLMS_FAMILIES):
        return _access_response(invoke, b"\x00", _ACTION_SUCCESS)
    if name.startswith(_GBZ_FAMILIES) and name not in _ASN1_USE_CASES:
        return _gbz(_default_response(_METERING))
    return None


# ---- DLMS --------------------------------------------------------------------------------


def _access_response(invoke: bytes, data: bytes, result: bytes, count: int = 1) -> bytes:
    # tag, invoke id, no date-time, no request echo, the data items, their results.
    return (
        bytes([_ACCESS_RESPONSE])
        + invoke
        + b"\x00\x00"
        + bytes([count])
        + data
        + bytes([count])
        + result * count
    )


def _u32(value: int) -> bytes:
    return bytes([_DOUBLE_LONG_UNSIGNED]) + value.to_bytes(4, "big")


def _scaler_unit(unit: int) -> bytes:
    return bytes([_STRUCTURE, 2, _INTEGER, 0, _ENUM, unit])


def _ecs17a(invoke: bytes, rng: random.Random, firmware: bytes, now: dt.datetime) -> bytes:
    # 1-0:2.8.0 and 1-0:4.8.0: (value, scaler/unit) each.
    data = (_u32(rng.randrange(1 << 24)) + _scaler_unit(_UNIT_WH)
            + _u32(rng.randrange(1 << 20)) + _scaler_unit(_UNIT_VARH))  # fmt: skip
    return _access_response(invoke, data, _GET_SUCCESS, count=4)


def _ecs82(invoke: bytes, rng: random.Random, firmware: bytes, now: dt.datetime) -> bytes:
    balance = rng.randrange(-_MAX_BALANCE, _MAX_BALANCE)
    return _access_response(invoke, b"\x05" + balance.to_bytes(4, "big", signed=True), _GET_SUCCESS)


def _ecs45(invoke: bytes, rng: random.Random, firmware: bytes, now: dt.datetime) -> bytes:
    return _access_response(invoke, bytes([_ENUM, 1]), _GET_SUCCESS)  # connected


# ---- GBZ ---------------------------------------------------------------------------------


def _gbz(*components: bytes) -> bytes:
    return _GBZ_PROFILE + bytes([len(components)]) + b"".join(components)


def _component(cluster: int, frame_control: int, command: int, payload: bytes) -> bytes:
    body = bytes([frame_control, 0, command]) + payload
    return b"\x00" + cluster.to_bytes(2, "big") + len(body).to_bytes(2, "big") + body


def _default_response(cluster: int) -> bytes:
    return _component(cluster, _ZCL_SERVER_TO_CLIENT, _ZCL_DEFAULT_RESPONSE, b"\x00\x00")


def _attributes(cluster: int, *records: tuple[int, int, bytes]) -> bytes:
    payload = b"".join(
        attribute.to_bytes(2, "little") + b"\x00" + bytes([data_type]) + value
        for attribute, data_type, value in records
    )
    return _component(cluster, _ZCL_SERVER_TO_CLIENT, _ZCL_READ_ATTRIBUTES_RESPONSE, payload)


def _gcs38(invoke: bytes, rng: random.Random, firmware: bytes, now: dt.datetime) -> bytes:
    return _gbz(_attributes(_METERING, (0x0206, _ZCL_OCTETS, bytes([len(firmware)]) + firmware)))


def _gcs60(invoke: bytes, rng: random.Random, firmware: bytes, now: dt.datetime) -> bytes:
    credit = rng.randrange(_MAX_BALANCE).to_bytes(4, "little")
    prepayment = rng.randrange(-_MAX_BALANCE, _MAX_BALANCE).to_bytes(4, "little", signed=True)
    return _gbz(
        _attributes(_METERING, (0x0A00, _ZCL_UINT32, credit)),
        _attributes(_PREPAYMENT, (0x0001, _ZCL_INT32, prepayment)),
    )


def _gcs33(invoke: bytes, rng: random.Random, firmware: bytes, now: dt.datetime) -> bytes:
    battery_days = rng.randrange(3650).to_bytes(2, "little")
    return _gbz(
        _attributes(_METERING, (0x0205, _ZCL_UINT16, battery_days), (0x0014, _ZCL_ENUM8, b"\x02"))
    )


# ---- ASN.1 -------------------------------------------------------------------------------


def _cs08(invoke: bytes, rng: random.Random, firmware: bytes, now: dt.datetime) -> bytes:
    # SEQUENCE { OCTET STRING firmware version, INTEGER 0 (read success) }.
    body = bytes([0x04, len(firmware)]) + firmware + b"\x02\x01\x00"
    return bytes([0x30, len(body)]) + body


def _gcs28(invoke: bytes, rng: random.Random, firmware: bytes, now: dt.datetime) -> bytes:
    # SEQUENCE { GeneralizedTime device time, INTEGER 0 (reliable) }.
    moment = now.astimezone(dt.UTC).strftime("%Y%m%d%H%M%SZ").encode("ascii")
    body = bytes([0x18, len(moment)]) + moment + b"\x02\x01\x00"
    return bytes([0x30, len(body)]) + body


_READS: dict[str, Encoder] = {
    "GCS28": _gcs28,
    "ECS17a": _ecs17a,
    "ECS45": _ecs45,
    "ECS82": _ecs82,
    "GCS33": _gcs33,
    "GCS38": _gcs38,
    "GCS60": _gcs60,
    "CS08": _cs08,
}
