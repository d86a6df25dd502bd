"""Device alerts (sans-IO): the alert code, its GBCS description, the time the device
raised it, and the payload the MMC schema defines for the few alerts that carry one.

Three payload forms (GBCS 7.2.10, 7.3.2 and the ASN.1 alerts of section 16):
- DLMS data-notification: (alert code, DLMS date-time, use-case content...);
- GBZ alert: profile, component count, alert code, ZCL UTC time, use-case content;
- ASN.1: SEQUENCE { alert code INTEGER, GeneralizedTime, use-case content... }.

Future-dated command outcomes (alerts 0x8F66 and 0x8F67) identify the instruction that
ran: the command's message code and originator counter, then the COSEM attribute
(class id, OBIS instance, attribute) or the GBZ cluster, frame control and command.
"""

from __future__ import annotations

import datetime as dt
from typing import NamedTuple

from parse_correlate.decode import asn1, dlms, gbz
from parse_correlate.decode.errors import DecodeError
from parse_correlate.decode.nodes import Node, branch, leaf
from parse_correlate.gbcs import decode_dlms_datetime
from parse_correlate.gbcs_bytes import ByteReader

FUTURE_DATED_SUCCESS = 0x8F66
FUTURE_DATED_FAILURE = 0x8F67
FIRMWARE_VERIFICATION_SUCCESSFUL = 0x8F72
SUPPLY_OUTAGE_RESTORED_CODES = frozenset(range(0x8F35, 0x8F3D))
_COSEM_INSTRUCTION_BYTES = 2 + 8 + 2 + 6 + 1  # message code, counter, class, OBIS, attribute
_GBZ_INSTRUCTION_BYTES = 2 + 8 + 2 + 1 + 1  # message code, counter, cluster, frame, command
MAX_DESCRIPTION_CHARS = 250  # the schema's AlertDescription limit
MAX_ALERT_CODE = 0xFFFF

# GBCS alert codes (GBCS table 16.2 names) of the alerts the RTDS set and the simulator use.
ALERT_DESCRIPTIONS: dict[int, str] = {
    0x8071: "GPF Device Log Changed",
    0x810D: "Combined Credit Below Low Credit Threshold (prepayment mode)",
    0x810E: "Credit Added Locally",
    0x8119: "Emergency Credit Has Become Available (prepayment mode)",
    0x81A0: "Smart Meter Integrity Issue - Warning",
    0x8F0A: "Billing Data Log Updated",
    0x8F12: "CHF Device Log Changed",
    0x8F1C: "Firmware Verification Failed",
    0x8F20: "Limited Duty Cycle Action Taken",
    0x8F26: "Sub GHz Channel Changed",
    0x8F28: "Sub GHz Channel Scan Request Assessment Outcome",
    0x8F2A: "Sub GHz Configuration Changed",
    0x8F2C: "Message Discarded Due to Duty Cycle Management",
    0x8F2D: "No More Sub GHz Device Capacity",
    0x8F30: "Source Does not have Authority for Command",
    0x8F35: "Supply Outage Restored",
    0x8F36: "Supply Outage Restored - Outage >= 3 minutes",
    0x8F66: "Future-date HAN Interface Command Successfully Actioned",
    0x8F67: "Future-date HAN Interface Command not Successfully Actioned",
    0x8F72: "Firmware Verification Successful",
    0x8F84: "Failure to Deliver Remote Party Message to ESME",
    0x8F8A: "Firmware transfer alert SUCCESS",
    0x8F8B: "Read Firmware version alert",
}


def describe_event(code: int) -> str | None:
    """The GBCS name of an event or alert code, when this table knows it."""
    return ALERT_DESCRIPTIONS.get(code)


class AlertHeader(NamedTuple):
    code: int
    raised_at: dt.datetime | None
    payload: Node | None = None


def describe(code: int, use_case: str | None) -> str:
    known = ALERT_DESCRIPTIONS.get(code)
    if known is not None:
        return known
    # Codes outside the table still say which use case raised them.
    return f"Alert 0x{code:04X}" + (f" ({use_case})" if use_case else "")


def alert_content(header: AlertHeader, use_case: str | None) -> Node:
    if header.raised_at is None:
        # The schema requires the time; a device clock 'not specified' cannot give it.
        raise DecodeError(f"alert 0x{header.code:04X} carries no usable time")
    if not 0 <= header.code <= MAX_ALERT_CODE:
        raise DecodeError(f"alert code {header.code} is not two bytes")
    timestamp = leaf("Timestamp", header.raised_at)
    return branch(
        "DeviceAlertContent",
        leaf("GBCSHexAlertCode", f"{header.code:04X}"),
        leaf("AlertDescription", describe(header.code, use_case)[:MAX_DESCRIPTION_CHARS]),
        timestamp,
        branch("Payload", header.payload) if header.payload is not None else None,
    )


# ---- the three forms ---------------------------------------------------------------------


def dlms_alert(payload: bytes) -> tuple[AlertHeader, dlms.DataNotification]:
    notification = dlms.decode_data_notification(payload)
    code = notification.alert_code
    content = notification.content
    node: Node | None = None
    if code in (FUTURE_DATED_SUCCESS, FUTURE_DATED_FAILURE) and len(content) == 1:
        node = _cosem_future_dated(content[0])
    elif code in SUPPLY_OUTAGE_RESTORED_CODES and len(content) == 2:
        node = _supply_outage(content[0], content[1])
    elif code == FIRMWARE_VERIFICATION_SUCCESSFUL and len(content) == 1:
        node = _firmware_hash(content[0])
    moment = decode_dlms_datetime(notification.date_time)
    return AlertHeader(code, moment, node), notification


def gbz_alert(payload: bytes) -> AlertHeader:
    alert = gbz.decode_gbz_alert(payload)
    node: Node | None = None
    if alert.alert_code in (FUTURE_DATED_SUCCESS, FUTURE_DATED_FAILURE):
        node = _gbz_future_dated(alert.rest)
    elif alert.alert_code == FIRMWARE_VERIFICATION_SUCCESSFUL:
        reader = ByteReader(alert.rest)
        if reader.byte("hash tag") != 0x09:  # a DLMS octet string, as GBCS defines it
            raise DecodeError("firmware hash is not an octet string")
        node = _firmware_hash(reader.octets("manufacturer image hash"))
    return AlertHeader(alert.alert_code, gbz.utc_time(alert.utc_time), node)


def asn1_alert(payload: bytes) -> tuple[AlertHeader, list[asn1.Der]]:
    fields = asn1.read_one(payload).children()
    if len(fields) < 2:
        raise DecodeError("an ASN.1 alert starts with its code and its time")
    code = fields[0].integer()
    return AlertHeader(code, fields[1].generalized_time()), fields[2:]


# ---- payloads ----------------------------------------------------------------------------


def _cosem_future_dated(value: dlms.DlmsData) -> Node:
    if not isinstance(value, bytes) or len(value) != _COSEM_INSTRUCTION_BYTES:
        raise DecodeError("future-dated alert content is not the 19-byte instruction id")
    instruction = branch(
        "DLMSCOSEMFDInstructionIdentification",
        leaf("ClassId", value[10:12]),
        leaf("InstanceId", value[12:18]),
        leaf("AttributeId", value[18:19]),
    )
    outcome = branch(
        "COSEMFutureDatedAlert",
        leaf("FutureDatedCommandMessageCode", value[0:2]),
        leaf("FutureDatedCommandOriginatorCounter", int.from_bytes(value[2:10], "big")),
        instruction,
    )
    return branch("FutureDatedCommandOutcomeDeviceAlert", outcome)


def _gbz_future_dated(rest: bytes) -> Node:
    reader = ByteReader(rest)
    value = reader.octets("future-dated alert content")
    if len(value) != _GBZ_INSTRUCTION_BYTES or reader.remaining:
        raise DecodeError("future-dated alert content is not the 14-byte instruction id")
    instruction = branch(
        "GBZFDInstructionIdentification",
        leaf("ExtendedHeaderClusterID", value[10:12]),
        leaf("FrameControl", value[12:13]),
        leaf("CommandIdentifier", value[13:14]),
    )
    outcome = branch(
        "GBZFutureDatedAlert",
        leaf("FutureDatedCommandMessageCode", value[0:2]),
        leaf("FutureDatedCommandOriginatorCounter", int.from_bytes(value[2:10], "big")),
        instruction,
    )
    return branch("FutureDatedCommandOutcomeDeviceAlert", outcome)


def _supply_outage(interrupted: dlms.DlmsData, restored: dlms.DlmsData) -> Node | None:
    if not isinstance(interrupted, bytes) or not isinstance(restored, bytes):
        raise DecodeError("supply outage alert content is not two date-times")
    start, end = decode_dlms_datetime(interrupted), decode_dlms_datetime(restored)
    if start is None or end is None:
        return None  # a 'not specified' time cannot fill the schema's required dateTime
    return branch(
        "SupplyOutageRestoreAlert", leaf("interruptionValue", start), leaf("restorationValue", end)
    )


def _firmware_hash(value: dlms.DlmsData) -> Node:
    if not isinstance(value, bytes):
        raise DecodeError("firmware hash is not an octet string")
    return branch("FirmwareVerificationDeviceAlert", leaf("ManufacturerImageHash", value))
