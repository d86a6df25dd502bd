"""What every use-case reader shares: its input, its result, and the generic readers
for responses whose MMC element holds only the outcome (sans-IO).

A reader turns a response payload into a `Reading`: whether the device did what it was
asked (`MessageSuccess`), the MMC element's content in schema order, and the protocol
statuses for `DebugInfo` when something failed. Readers raise `NoLayout` when the
payload carries values that no table here places in the MMC output (the caller then
passes the payload on opaque and says so), and `NeedsKeys` when the values are
encrypted and no key was supplied.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

from mmc.identifiers import eui64_to_bytes
from parse_correlate.decode import asn1, dlms, gbz
from parse_correlate.decode.nodes import Node, branch, leaf
from parse_correlate.gbcs import GbcsMessage
from parse_correlate.gbcs_mac import KeyAgreement


class Source(NamedTuple):
    message: GbcsMessage
    keys: KeyAgreement | None


class Reading(NamedTuple):
    success: bool
    content: tuple[Node, ...] = ()
    debug: Node | None = None


Reader = Callable[[Source], Reading]


class NoLayout(Exception):
    """The payload carries values no table here places in the MMC output."""


class NeedsKeys(Exception):
    """The values are encrypted and no key agreement key was supplied."""


# ---- DLMS --------------------------------------------------------------------------------

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


def cosem_debug(results: list[dlms.AccessResult]) -> Node | None:
    """DebugInfo/COSEMDebug: every result, by position, when any failed."""
    if all(result.success for result in results):
        return None
    responses = []
    for position, result in enumerate(results, start=1):
        if result.kind == "action":
            status = leaf(
                "ActionResult", _ACTION_RESULTS.get(result.code, "response-code-not-known")
            )
        else:
            text = _DATA_ACCESS_RESULTS.get(result.code, "response-code-not-known")
            status = leaf("DataAccessResult", text)
        responses.append(
            branch("COSEMResponse", status, ResponseCode=str(result.code), Position=str(position))
        )
    return branch("DebugInfo", branch("COSEMDebug", *responses))


def dlms_outcome(source: Source) -> tuple[dlms.AccessResponse, Reading]:
    access = dlms.decode_access_response(source.message.payload)
    success = all(result.success for result in access.results)
    return access, Reading(success, (), cosem_debug(access.results))


def dlms_ack(source: Source, *, content_has_no_element: bool) -> Reading:
    access, reading = dlms_outcome(source)
    carries_values = any(
        value is not None and result.success
        for value, result in zip(access.data, access.results, strict=True)
    )
    if carries_values and not content_has_no_element:
        raise NoLayout
    return reading


def dlms_value(source: Source, value: dlms.DlmsData) -> dlms.DlmsData:
    """A value as sent, or decrypted when it is protected data (keys needed)."""
    protected = dlms.protected_data(value)
    if protected is None:
        return value
    if source.keys is None:
        raise NeedsKeys
    return dlms.decrypt_protected(protected, source.keys)


# ---- GBZ ---------------------------------------------------------------------------------

_ZCL_STATUSES = {
    0x00: "SUCCESS", 0x01: "FAILURE", 0x7E: "NOT_AUTHORIZED", 0x7F: "RESERVED_FIELD_NOT_ZERO",
    0x80: "MALFORMED_COMMAND", 0x81: "UNSUP_CLUSTER_COMMAND", 0x82: "UNSUP_GENERAL_COMMAND",
    0x83: "UNSUP_MANUF_CLUSTER_COMMAND", 0x84: "UNSUP_MANUF_GENERAL_COMMAND",
    0x85: "INVALID_FIELD", 0x86: "UNSUPPORTED_ATTRIBUTE", 0x87: "INVALID_VALUE",
    0x88: "READ_ONLY", 0x89: "INSUFFICIENT_SPACE", 0x8A: "DUPLICATE_EXISTS", 0x8B: "NOT_FOUND",
    0x8C: "UNREPORTABLE_ATTRIBUTE", 0x8D: "INVALID_DATA_TYPE", 0x8E: "INVALID_SELECTOR",
    0x8F: "WRITE_ONLY", 0x90: "INCONSISTENT_STARTUP_STATE", 0x91: "DEFINED_OUT_OF_BAND",
    0x92: "INCONSISTENT", 0x93: "ACTION_DENIED", 0x94: "TIMEOUT", 0x95: "ABORT",
    0x96: "INVALID_IMAGE", 0x97: "WAIT_FOR_DATA", 0x98: "NO_IMAGE_AVAILABLE",
    0x99: "REQUIRE_MORE_IMAGE", 0xC0: "HARDWARE_FAILURE", 0xC1: "SOFTWARE_FAILURE",
    0xC2: "CALIBRATION_ERROR",
}  # fmt: skip
_CLUSTER_NAMES = {
    0x0000: "Basic", 0x0700: "Price", 0x0702: "Metering", 0x0703: "Messaging",
    0x0705: "Prepayment", 0x0707: "Calendar", 0x0708: "DeviceManagement", 0x0709: "Events",
}  # fmt: skip


def zcl_status(code: int) -> Node:
    name = _ZCL_STATUSES.get(code, "RESPONSE_CODE_NOT_KNOWN")
    return branch("Status", leaf("ZCLStatus", name), ResponseCode=f"{code:02X}")


ZCL_NOT_FOUND = 0x8B  # a log read with no entries in the range asked for: not a failure


def gbz_failures(components: list[gbz.GbzComponent]) -> list[tuple[gbz.GbzComponent, Node]]:
    """Each failed default response or attribute read, as a ZIGBEEDebug entry."""
    failures = []
    for component in components:
        if component.is_default_response:
            status = gbz.default_response_status(component)
            if status not in (0, ZCL_NOT_FOUND):
                entry = branch(
                    "ZIGBEECommandResponse",
                    leaf("CommandID", f"0x{component.payload[0]:02X}"),
                    zcl_status(status),
                )
                failures.append((component, entry))
        elif component.is_read_attributes_response and not component.encrypted:
            for record in gbz.read_attributes_response(component.payload):
                if record.status != 0:
                    entry = branch(
                        "ZIGBEEDataResponse",
                        leaf("AttributeID", f"0x{record.attribute:04X}"),
                        zcl_status(record.status),
                    )
                    failures.append((component, entry))
    return failures


def zigbee_debug(failures: list[tuple[gbz.GbzComponent, Node]]) -> Node | None:
    if not failures:
        return None
    clusters = []
    for component, entry in failures:
        name = _CLUSTER_NAMES.get(component.cluster, f"0x{component.cluster:04X}")
        clusters.append(branch("ZIGBEEClusterResponse", leaf("ClusterName", name), entry))
    return branch("DebugInfo", branch("ZIGBEEDebug", *clusters))


def gbz_outcome(source: Source) -> tuple[list[gbz.GbzComponent], Reading]:
    components = gbz.decode_gbz(source.message.payload)
    failures = gbz_failures(components)
    return components, Reading(not failures, (), zigbee_debug(failures))


def gbz_ack(source: Source, *, content_has_no_element: bool) -> Reading:
    components, reading = gbz_outcome(source)
    carries_values = any(not component.is_default_response for component in components)
    if carries_values and reading.success and not content_has_no_element:
        raise NoLayout
    return reading


def gbz_plain(source: Source, component: gbz.GbzComponent) -> bytes:
    """A component's ZCL payload, decrypted when it is encrypted (keys needed). The key
    is agreed for the message's transaction: the device, the originator counter and the
    recipient, with the supplementary fields standing in where the header has them."""
    if not component.encrypted:
        return component.payload
    if source.keys is None:
        raise NeedsKeys
    header = source.message.header
    counter = header.supplementary_originator_counter
    recipient = header.supplementary_remote_party or header.recipient
    originator, target = eui64_to_bytes(header.originator), eui64_to_bytes(recipient)
    transaction = b"\x04" + (header.originator_counter if counter is None else counter).to_bytes(
        8, "big"
    )
    return dlms.decrypt_gcm(
        source.keys,
        transaction_id=transaction,
        originator=originator,
        recipient=target,
        blob=component.payload,
        additional=component.payload[:1],
    )


# ---- ASN.1 -------------------------------------------------------------------------------


def asn1_payload(source: Source) -> asn1.Der:
    return asn1.read_one(source.message.payload)
