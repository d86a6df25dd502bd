"""Build sr:Response documents that are valid under the request's DUIS version.

Responses are written as compact XML text (no whitespace between elements):
the DCC's own tools drop such whitespace before digesting, so anything we sign
must not carry it. The text is also the document's inclusive canonical form,
so signing needs no parse. Every value placed here is either produced by the gateway
or was validated on the way in; text is still escaped, because validation rules
change and escaping costs nothing.
"""

from __future__ import annotations

import base64
import datetime as dt
from collections.abc import Iterable, Mapping, Sequence

import msgspec

from mmc.catalogue import Catalogue
from mmc.identifiers import Eui64, RequestId

# Written in inclusive canonical form (namespace declarations sorted by prefix, then
# attributes; no empty-element tags; C14N text escaping), so the signer can digest the
# bytes as they are: tests check c14n(parse(x)) == x for every builder.
_OPEN = (
    '<sr:Response xmlns:ra="http://www.dccinterface.co.uk/ResponseAndAlert" '
    'xmlns:sr="http://www.dccinterface.co.uk/ServiceUserGateway" schemaVersion="{version}">'
)

# A code a version lacks is answered with the closest one it has. Only codes
# added after 5.0 need an entry; the mapping is documented in the README.
CLOSEST_CODE = {
    "E65": "E1",  # 5.1+: originator not permitted for this endpoint -> unauthorised User
    "E66": "E2",
    "E67": "E2",
    "E68": "E5",
    "E69": "E5",
    "E70": "E12",
    "E71": "E13",
}


class InventoryDevice(msgspec.Struct, frozen=True):
    """The fields of sr:Device in a DSPInventory, in schema order."""

    device_id: Eui64
    device_type: str  # ESME GSME GPF CHF HCALCS PPMID IHD CAD
    device_status: str | None  # Pending Whitelisted InstalledNotCommissioned Commissioned ...
    manufacturer: str
    model: str
    firmware_version: str | None = None
    smets_chts_version: str | None = None  # "SMETS V2.0" (sr:SMETSCHTSVersion)
    import_mpxn: str | None = None
    csp_region: str | None = None
    gbcs_version: str | None = None


def escape(text: str) -> str:
    """C14N text escaping; most values need none, so test before replacing."""
    if "&" in text or "<" in text or ">" in text or "\r" in text:
        text = text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
        text = text.replace("\r", "&#xD;")
    return text


_second_cache: tuple[int, str] = (-1, "")


def timestamp(now: dt.datetime) -> str:
    """xs:dateTime in the DCC's form: 2025-12-28T16:51:01.185Z."""
    global _second_cache
    utc = now.astimezone(dt.UTC)
    second = int(utc.timestamp())
    if _second_cache[0] != second:  # strftime costs ~7 µs; the second changes rarely
        _second_cache = (second, utc.strftime("%Y-%m-%dT%H:%M:%S."))
    return f"{_second_cache[1]}{utc.microsecond // 1000:03d}Z"


def response_code(catalogue: Catalogue, code: str) -> str:
    """The code itself if the version defines it, else the closest it has."""
    if code in catalogue.response_codes:
        return code
    fallback = CLOSEST_CODE.get(code, "E1")
    return fallback if fallback in catalogue.response_codes else "E1"


def _header(
    catalogue: Catalogue,
    code: str,
    now: dt.datetime,
    request_id: RequestId | None,
    response_id: str | None = None,
) -> str:
    parts = [_OPEN.format(version=escape(catalogue.version)), "<sr:Header>"]
    if request_id is not None:
        parts.append(f"<sr:RequestID>{request_id}</sr:RequestID>")
    if response_id is not None:
        parts.append(f"<sr:ResponseID>{escape(response_id)}</sr:ResponseID>")
    parts.append(f"<sr:ResponseCode>{response_code(catalogue, code)}</sr:ResponseCode>")
    parts.append(f"<sr:ResponseDateTime>{timestamp(now)}</sr:ResponseDateTime></sr:Header>")
    return "".join(parts)


def _message(reference: str, variant: str, content: str = "") -> str:
    return (
        "<sr:Body><sr:ResponseMessage>"
        f"<sr:ServiceReference>{escape(reference)}</sr:ServiceReference>"
        f"<sr:ServiceReferenceVariant>{escape(variant)}</sr:ServiceReferenceVariant>"
        f"{content}</sr:ResponseMessage></sr:Body>"
    )


def acknowledgement(
    catalogue: Catalogue,
    request_id: RequestId,
    code: str,
    reference: str,
    variant: str,
    now: dt.datetime,
) -> bytes:
    """I99 for an accepted asynchronous request, or an error acknowledgement (unsigned)."""
    return (
        _header(catalogue, code, now, request_id) + _message(reference, variant) + "</sr:Response>"
    ).encode()


def service_response(
    catalogue: Catalogue,
    request_id: RequestId,
    code: str,
    reference: str,
    variant: str,
    now: dt.datetime,
    *,
    content: str = "",
    response_id: str | None = None,
) -> bytes:
    """A Service Response with content, to be signed by the DCC key before delivery."""
    return (
        _header(catalogue, code, now, request_id, response_id)
        + _message(reference, variant, content)
        + "</sr:Response>"
    ).encode()


def gbcs_payload(payload: bytes) -> str:
    return f"<sr:GBCSPayload>{base64.b64encode(payload).decode()}</sr:GBCSPayload>"


def local_command(payload: bytes) -> str:
    """ResponseMessage content of a command for local delivery (CV 2, 3, 6, 7)."""
    return (
        f"<sr:LocalCommand><sr:GBCSPayload>{base64.b64encode(payload).decode()}"
        "</sr:GBCSPayload></sr:LocalCommand>"
    )


def pre_command(gbcs_version: str, payload: bytes) -> str:
    return (
        f"<sr:PreCommand><sr:GBCSVersion>{escape(gbcs_version)}</sr:GBCSVersion>"
        f"<sr:GBCSPayload>{base64.b64encode(payload).decode()}</sr:GBCSPayload></sr:PreCommand>"
    )


def inventory(devices: Sequence[InventoryDevice]) -> str:
    """sr:DSPInventory content (the schema allows up to 17 devices)."""
    out = ["<sr:DSPInventory>"]
    for d in devices[:17]:
        out.append(f"<sr:Device><sr:DeviceID>{d.device_id}</sr:DeviceID>")
        out.append(f"<sr:DeviceType>{escape(d.device_type)}</sr:DeviceType>")
        if d.device_status is not None:
            out.append(f"<sr:DeviceStatus>{escape(d.device_status)}</sr:DeviceStatus>")
        out.append(f"<sr:DeviceManufacturer>{escape(d.manufacturer)}</sr:DeviceManufacturer>")
        out.append(f"<sr:DeviceModel>{escape(d.model)}</sr:DeviceModel>")
        if d.smets_chts_version is not None:
            out.append(f"<sr:SMETSCHTSVersion>{escape(d.smets_chts_version)}</sr:SMETSCHTSVersion>")
        if d.firmware_version is not None:
            out.append(
                f"<sr:DeviceFirmwareVersion>{escape(d.firmware_version)}</sr:DeviceFirmwareVersion>"
            )
        if d.import_mpxn is not None:
            out.append(f"<sr:ImportMPxN>{escape(d.import_mpxn)}</sr:ImportMPxN>")
        if d.csp_region is not None:
            out.append(f"<sr:CSPRegion>{escape(d.csp_region)}</sr:CSPRegion>")
        if d.gbcs_version is not None:
            out.append(f"<sr:DeviceGBCSVersion>{escape(d.gbcs_version)}</sr:DeviceGBCSVersion>")
        out.append("</sr:Device>")
    out.append("</sr:DSPInventory>")
    return "".join(out)


def firmware_warning(lists: Mapping[str, Iterable[Eui64]]) -> str:
    """sr:DSPUpdateFirmwareWarning with the device lists that are non-empty, in schema order."""
    order = (
        "InvalidDeviceIDList",
        "NotCommissionedDeviceIDList",
        "NotApplicableFirmwareDeviceIDList",
        "OtherRequestInProgressList",
        "InvalidGBCSVersionList",
    )
    out = ["<sr:DSPUpdateFirmwareWarning>"]
    for name in order:
        ids = list(lists.get(name, ()))
        if ids:
            out.append(f"<sr:{name}>{','.join(ids)}</sr:{name}>")
    out.append("</sr:DSPUpdateFirmwareWarning>")
    return "".join(out)


def dcc_alert(
    catalogue: Catalogue,
    alert_code: str,
    alert_content: str,
    now: dt.datetime,
    *,
    request_id: RequestId | None = None,
    response_id: str | None = None,
) -> bytes:
    """A DCC Alert (sr:DCCAlertMessage), to be signed before delivery."""
    return (
        _header(catalogue, "I0", now, request_id, response_id)
        + "<sr:Body><sr:DCCAlertMessage>"
        + f"<sr:DCCAlertCode>{escape(alert_code)}</sr:DCCAlertCode>"
        + f"<sr:DCCAlert>{alert_content}</sr:DCCAlert>"
        + "</sr:DCCAlertMessage></sr:Body></sr:Response>"
    ).encode()


def device_alert(
    catalogue: Catalogue, alert_code: str, payload: bytes, now: dt.datetime, *, response_id: str
) -> bytes:
    """A Device Alert (sr:DeviceAlertMessage), to be signed before delivery.

    `alert_code` is the GBCS alert code as four hex digits, `payload` the alert as the
    device sent it, `response_id` the alert's identity (device:User:counter, the
    ResponseIDType form). A device alert answers no request: no RequestID; I0."""
    return (
        _header(catalogue, "I0", now, None, response_id)
        + "<sr:Body><sr:DeviceAlertMessage>"
        + f"<sr:AlertCode>{escape(alert_code)}</sr:AlertCode>"
        + f"<sr:GBCSPayload>{base64.b64encode(payload).decode()}</sr:GBCSPayload>"
        + "</sr:DeviceAlertMessage></sr:Body></sr:Response>"
    ).encode()


def quarantined_request(breach: str, request_id: RequestId, event_ref: int) -> str:
    """DCCAlert content for AD1: breach is ADUserThresholdBreach, ADDCCThresholdBreach
    or ADAttributeLimitsBreach."""
    return (
        f"<sr:QuarantinedRequest><sr:{breach}><sr:RequestID>{request_id}</sr:RequestID>"
        f"<sr:QuarantineEventRef>{event_ref}</sr:QuarantineEventRef></sr:{breach}>"
        "</sr:QuarantinedRequest>"
    )


def version_mismatch(
    request_id: RequestId, reference: str, variant: str, request_version: str, user_version: str
) -> str:
    """DCCAlert content for DUISVersionMismatch: a response the User's version cannot carry."""
    return (
        "<sr:DUISVersionMismatch><sr:ServiceResponseVersionMismatch>"
        f"<sr:RequestID>{request_id}</sr:RequestID>"
        f"<sr:ServiceReference>{escape(reference)}</sr:ServiceReference>"
        f"<sr:ServiceReferenceVariant>{escape(variant)}</sr:ServiceReferenceVariant>"
        f"<sr:ServiceRequestDUISVersion>{escape(request_version)}</sr:ServiceRequestDUISVersion>"
        "</sr:ServiceResponseVersionMismatch>"
        f"<sr:ServiceUserDUISVersion>{escape(user_version)}</sr:ServiceUserDUISVersion>"
        "</sr:DUISVersionMismatch>"
    )
