"""Hub and credential use cases with ASN.1 payloads -> their MMC elements (sans-IO).

The ASN.1 structures are the GBCS ones (section 16 and the CS02 to CS08, GCS28 and
GCS59 use cases); the status enumerations map to the MMC schema's StatusASN1 values
in the order GBCS numbers them.
"""

from __future__ import annotations

import base64

from parse_correlate.decode import asn1
from parse_correlate.decode.errors import DecodeError
from parse_correlate.decode.nodes import Node, branch, leaf
from parse_correlate.decode.readers import Reader, Reading, Source, asn1_payload
from parse_correlate.gbcs_codes import MESSAGE_CODES

JOIN_STATUSES = (
    "success", "invalidMessageCodeForJoinMethodAndRole", "invalidJoinMethodAndRole",
    "incompatibleWithExistingEntry", "deviceLogFull", "writeFailure",
    "keyAgreementNoResources", "keyAgreementUnknownIssuer", "keyAgreementUnsupportedSuite",
    "keyAgreementBadMessage", "keyAgreementBadKeyConfirm", "invalidOrMissingCertificate",
    "noPartnerLinkKeyReceived", "noCBKEResponse",
)  # fmt: skip
UNJOIN_STATUSES = ("success", "otherDeviceNotInDeviceLog", "otherFailure")
DEVICE_CERTIFICATE_STATUSES = (
    "success", "invalidCertificate", "wrongDeviceIdentity", "invalidKeyUsage",
    "noCorrespondingKeyPairGenerated", "wrongPublicKey", "certificateStorageFailed",
    "privateKeyChangeFailed",
)  # fmt: skip
ISSUE_STATUSES = ("success", "invalidKeyUsage", "keyPairGenerationFailed", "cRProductionFailed")
PROVIDE_CERTIFICATE_STATUSES = (
    "success", "invalidKeyUsage", "noCertificateHeld", "certificateRetrievalFailure",
)  # fmt: skip
ACTIVATE_STATUSES = ("success", "noImageHeld", "hashMismatch", "activationFailure")
CLOCK_STATUSES = ("reliable", "invalid", "unreliable")
# StatusCode ::= ENUMERATED of the CS02a and CS02b responses (sparse).
CREDENTIAL_STATUSES = {
    0: "success", 5: "badCertificate", 10: "noTrustAnchor", 17: "insufficientMemory",
    25: "trustAnchorNotFound", 30: "resourcesBusy", 127: "other",
}  # fmt: skip
# RemotePartyRole INTEGER; WAN provider (6), issuing authority (7) and other (127) have
# no MMC name.
ROLES = {0: "Root", 1: "Recovery", 2: "Supplier", 3: "NetworkOperator", 4: "ACB",
         5: "TransCoS", 8: "LoadController"}  # fmt: skip
# CredentialsReplacementMode INTEGER -> the MMC names (the modes a User's SRV can ask).
REPLACEMENT_MODES = {
    2: "SupplierBySupplier", 3: "NetworkOperatorByNetworkOperator", 4: "ACBByACB",
    7: "SupplierByTransCoS", 11: "LoadControllerBySupplier",
}  # fmt: skip
DEVICE_TYPES = ("GSME", "ESME", "CHF", "GPF", "HCALCS", "PPMID", "Type2")
_KEY_USAGE_DIGITAL_SIGNATURE = 0x80
_KEY_USAGE_KEY_AGREEMENT = 0x08
_KEY_USAGE_KEY_CERT_SIGN = 0x04
_CELL_USAGE_TOP_UP = 1


def status(name: str, codes: tuple[str, ...] | dict[int, str], code: int) -> Node:
    if isinstance(codes, tuple):
        text = codes[code] if 0 <= code < len(codes) else "notKnown"
    else:
        text = codes.get(code, "notKnown")
    return branch(name, leaf("ASN1Status", text), ResponseCode=str(code))


def _eui(raw: bytes) -> str:
    if len(raw) != 8:
        raise DecodeError("a device or remote party id is 8 bytes")
    return "-".join(f"{b:02X}" for b in raw)


def _integer_status(element: str, codes: tuple[str, ...]) -> Reader:
    """Responses that are one INTEGER status (join, unjoin, update device certificate)."""

    def reader(source: Source) -> Reading:
        code = asn1_payload(source).integer()
        return Reading(code == 0, (status(element, codes, code),))

    return reader


def _certificate_type(key_usage: asn1.Der, cell_usage: int) -> str | None:
    bits = key_usage.contents[1] if len(key_usage.contents) > 1 else 0
    if bits & _KEY_USAGE_DIGITAL_SIGNATURE:
        return "DigitalSigning"
    if bits & _KEY_USAGE_KEY_AGREEMENT:
        return "KeyAgreementTopUp" if cell_usage == _CELL_USAGE_TOP_UP else "KeyAgreement"
    if bits & _KEY_USAGE_KEY_CERT_SIGN:
        return "KeyCertSign"
    return None


def _cell(identifier: asn1.Der) -> tuple[int | None, str | None]:
    """TrustAnchorCellIdentifier: (role, key usage [, cell usage]) or, inside a CS02a
    answer, (key usage [, cell usage]) -> (role, certificate type)."""
    fields = identifier.children()
    role = fields[0].integer() if fields and fields[0].tag == asn1.INTEGER else None
    rest = fields[1:] if role is not None else fields
    if not rest or rest[0].tag != asn1.BIT_STRING:
        raise DecodeError("trust anchor cell has no key usage")
    cell_usage = rest[1].integer() if len(rest) > 1 else 0
    return role, _certificate_type(rest[0], cell_usage)


def _optional(name: str, value: str | int | None) -> Node | None:
    return None if value is None else leaf(name, value)


def _execution_outcome(outcome: asn1.Der) -> Node:
    fields = outcome.children()
    if len(fields) != 4:
        raise DecodeError("execution outcome is not (seq, mode, seq changes, outcomes)")
    counter, mode, changes, replacements = fields
    change_nodes = []
    for change in changes.children()[:1]:  # the schema keeps one change
        parts = change.children()
        top_up = None
        if len(parts) > 2:
            specialist = [s.children() for s in parts[2].children()]
            top_up = next((s[1].counter() for s in specialist if s[0].integer() == 0), None)
        change_nodes.append(
            branch(
                "RemotePartySeqNumberChange",
                _optional("RemotePartyRole", ROLES.get(parts[0].integer())),
                leaf("RemotePartyFloorSeqNumber", parts[1].counter()),
                _optional("RemotePartyPrepaymentTopUpFloorSeqNumber", top_up),
            )
        )
    outcome_nodes = []
    for replacement in replacements.children()[:3]:  # the schema keeps three
        cell, code, old_id, old_key, new_id, new_key = replacement.children()
        role, certificate_type = _cell(cell)
        outcome_nodes.append(
            branch(
                "ReplacementOutcome",
                status("StatusCode", CREDENTIAL_STATUSES, code.integer()),
                _optional("CertificateType", certificate_type),
                _optional("RemotePartyRole", ROLES.get(role) if role is not None else None),
                leaf("ExistingRemotePartyID", _eui(old_id.octets())),
                leaf("NewRemotePartyID", _eui(new_id.octets())),
                leaf("ExistingCertificateHash", base64.b64encode(old_key.octets()).decode()),
                leaf("NewCertificateHash", base64.b64encode(new_key.octets()).decode()),
            )
        )
    return branch(
        "ExecutionOutcome",
        leaf("AuthorisingRemotePartyOriginatorCounter", counter.counter()),
        _optional("CredentialsReplacementMode", REPLACEMENT_MODES.get(mode.integer())),
        *change_nodes,
        *outcome_nodes,
    )


def _cs02b(source: Source) -> Reading:
    # SEQUENCE { NULL (accepted) [, execution outcome] }: future-dated commands answer
    # with the NULL alone; the outcome then follows in an alert.
    fields = asn1_payload(source).children()
    if not fields or fields[0].tag != asn1.NULL:
        raise DecodeError("update security credentials response does not start with NULL")
    if len(fields) == 1:
        return Reading(True)
    outcome = _execution_outcome(fields[1])
    success = all(
        child.children[0].attributes == (("ResponseCode", "0"),)
        for child in outcome.children
        if child.name == "ReplacementOutcome"
    )
    return Reading(success, (outcome,))


def _cs02a(source: Source) -> Reading:
    # SEQUENCE OF remote party details: (role, status [, floor seq, cells]).
    details = []
    success = True
    for party in asn1_payload(source).children():
        fields = party.children()
        role, code = fields[0].integer(), fields[1].integer()
        success = success and code == 0
        head = (_optional("RemotePartyRole", ROLES.get(role)),
                status("StatusCode", CREDENTIAL_STATUSES, code))  # fmt: skip
        if len(fields) < 4:
            details.append(branch("RemotePartyDetails", *head))
            continue
        floor = fields[2].counter()
        for cell in fields[3].children():
            parts = cell.children()
            _, certificate_type = _cell(asn1.Der(asn1.SEQUENCE, b"".join(
                _der(part) for part in parts[:-2])))  # fmt: skip
            details.append(
                branch(
                    "RemotePartyDetails",
                    *head,
                    leaf("RemotePartyFloorSeqNumber", floor),
                    _optional("CertificateUsage", certificate_type),
                    leaf("ExistingRemotePartyID", _eui(parts[-2].octets())),
                    leaf("ExistingCertificateHash", base64.b64encode(parts[-1].octets()).decode()),
                )
            )
    return Reading(success, tuple(details))


def _der(value: asn1.Der) -> bytes:
    length = len(value.contents)
    if length < 0x80:
        encoded = bytes([length])
    else:
        size = (length.bit_length() + 7) // 8
        encoded = bytes([0x80 | size]) + length.to_bytes(size, "big")
    return bytes([value.tag]) + encoded + value.contents


def _cs02c(source: Source) -> Reading:
    # A certification request (SEQUENCE) or an INTEGER failure code.
    value = asn1_payload(source)
    if value.tag == asn1.SEQUENCE:
        request = base64.b64encode(_der(value)).decode()
        return Reading(True, (status("IssueCredentialsResponseCode", ISSUE_STATUSES, 0),
                              leaf("CertificationRequest", request)))  # fmt: skip
    code = value.integer()
    return Reading(code == 0, (status("IssueCredentialsResponseCode", ISSUE_STATUSES, code),))


def _cs02e(source: Source) -> Reading:
    # The device's certificate (SEQUENCE) or an INTEGER failure code.
    value = asn1_payload(source)
    name = "RetrieveDeviceSecurityCredentialsStatusCode"
    if value.tag == asn1.SEQUENCE:
        certificate = base64.b64encode(_der(value)).decode()
        return Reading(True, (status(name, PROVIDE_CERTIFICATE_STATUSES, 0),
                              leaf("Certificate", certificate)))  # fmt: skip
    code = value.integer()
    return Reading(code == 0, (status(name, PROVIDE_CERTIFICATE_STATUSES, code),))


def _cs06(source: Source) -> Reading:
    # NULL (accepted, future-dated) or SEQUENCE { response code, firmware version }.
    value = asn1_payload(source)
    if value.tag == asn1.NULL:
        return Reading(True)
    code, version = value.children()
    number = code.integer()
    return Reading(
        number == 0,
        (status("ActivateImageResponseCode", ACTIVATE_STATUSES, number),
         leaf("FirmwareVersion", version.octets().hex().upper())),
    )  # fmt: skip


def _cs07(source: Source) -> Reading:
    # SEQUENCE { response code (0 success, 1 read failure) [, device log entries] }.
    fields = asn1_payload(source).children()
    code = fields[0].integer()
    entries = []
    for entry in fields[1].children() if len(fields) > 1 else ():
        device, kind = entry.children()
        index = kind.integer()
        if not 0 <= index < len(DEVICE_TYPES):
            raise DecodeError(f"device type {index} is not a GBCS device type")
        entries.append(branch("LogEntry", leaf("DeviceID", _eui(device.octets())),
                              leaf("DeviceType", DEVICE_TYPES[index])))  # fmt: skip
    return Reading(code == 0, (branch("DeviceLogEntries", *entries),))


def _cs08(source: Source) -> Reading:
    # SEQUENCE { firmware version, response code (0 read success, 1 read failure) }.
    version, code = asn1_payload(source).children()
    if code.integer() != 0:
        return Reading(False)
    return Reading(True, (leaf("FirmwareVersion", version.octets().hex().upper()),))


def _gcs28(source: Source) -> Reading:
    # SEQUENCE { device time, device time status (0 reliable, 1 invalid, 2 unreliable) }.
    moment, code = asn1_payload(source).children()
    number = code.integer()
    return Reading(
        number != 1,
        (leaf("DeviceTime", moment.generalized_time()),
         branch("Gas", status("GasClockTimeStatus", CLOCK_STATUSES, number))),
    )  # fmt: skip


def _gcs59(source: Source) -> Reading:
    # SEQUENCE { SEQUENCE OF (device log entry, join response code) }.
    outcomes = []
    success = True
    for outcome in asn1_payload(source).children()[0].children():
        entry, code = outcome.children()
        device, kind = entry.children()
        number = code.integer()
        success = success and number == 0
        outcomes.append(
            branch(
                "RestoreDeviceLogOutcome",
                branch("DeviceLogEntry", leaf("DeviceID", _eui(device.octets())),
                       leaf("DeviceType", DEVICE_TYPES[kind.integer()])),
                status("joinResponseCode", JOIN_STATUSES, number),
            )
        )  # fmt: skip
    return Reading(success, tuple(outcomes))


_C = MESSAGE_CODES
_JOIN = _integer_status("joinResponseCode", JOIN_STATUSES)
_UNJOIN = _integer_status("unjoinResponseCode", UNJOIN_STATUSES)
CS_LAYOUTS: dict[int, Reader] = {
    _C["CS02a"]: _cs02a,
    _C["CS02f"]: _cs02a,
    _C["CS02c"]: _cs02c,
    _C["CS02d"]: _integer_status(
        "UpdateSecurityCredentialsResponseCode", DEVICE_CERTIFICATE_STATUSES
    ),
    _C["CS02e"]: _cs02e,
    _C["CS03A1"]: _JOIN,
    _C["CS03A2"]: _JOIN,
    _C["CS03B"]: _JOIN,
    _C["CS03C"]: _JOIN,
    _C["CS04AC"]: _UNJOIN,
    _C["CS04B"]: _UNJOIN,
    _C["CS06"]: _cs06,
    _C["CS07"]: _cs07,
    _C["CS08"]: _cs08,
    _C["GCS28"]: _gcs28,
    _C["GCS59"]: _gcs59,
    **{_C[name]: _cs02b for name in (
        "CS02bSupplierBySupplier", "CS02bNOByNO", "CS02bACBByACB", "CS02bSupplierByTransCoS",
        "CS02gLoadControllerBySupplier")},
}  # fmt: skip
