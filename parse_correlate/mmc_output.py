"""GBCS response/alert -> MMC output XML (`ra:GBCSResponse`), per DUIS version (sans-IO).

The structure is the MMC schema's (`MMC_Schema_V5.x.xsd`, namespace ResponseAndAlert):
Header (device -> User identifiers, counter, message code, SRV, device timestamp) and a
Body holding a ResponseMessage or a DeviceAlertMessage.

Order of work: integrity first (`parse_correlate.integrity`: with keys, a MAC or
signature that does not verify raises, and nothing is decoded), then the use-case table
(`parse_correlate.decode.usecases`) names the SRV and its MMC element, and a reader
(`parse_correlate.decode.layouts`, or the generic outcome readers) fills it. The payload
is passed on as `GBCSData` only where the MMC schema has no element for it, where its
values are encrypted and no key was given (`format="encrypted"`, for a second pass), or
where no table here places its values; an XML comment says which.

Versions differ only where their schemas do: 5.0's header Timestamp has no ClockStatus.
"""

from __future__ import annotations

import base64
from typing import NamedTuple

from lxml import etree

from parse_correlate.decode import alerts, dlms
from parse_correlate.decode.errors import DecodeError
from parse_correlate.decode.layouts import LAYOUTS
from parse_correlate.decode.nodes import Node, count_values, format_datetime
from parse_correlate.decode.readers import (
    NeedsKeys,
    NoLayout,
    Reader,
    Reading,
    Source,
    dlms_ack,
    gbz_ack,
)
from parse_correlate.decode.usecases import RESPONSE_ELEMENTS, UseCase, use_case_for
from parse_correlate.gbcs import (
    Cra,
    GbcsMessage,
    decode_dlms_datetime,
    dlms_clock_status,
    parse_message,
)
from parse_correlate.gbcs_bytes import GbcsError
from parse_correlate.gbcs_codes import message_code_name
from parse_correlate.integrity import Authentication, Credentials, authenticate

RA_NAMESPACE = "http://www.dccinterface.co.uk/ResponseAndAlert"
SUPPORTED_VERSIONS = ("5.0", "5.1", "5.3", "5.4")
_VERSIONS_WITH_CLOCK_STATUS = frozenset({"5.1", "5.3", "5.4"})
_DLMS_ACCESS_RESPONSE = 0xDA
_DLMS_DATA_NOTIFICATION = 0x0F
_GBZ_PROFILE = b"\x01\x09"

# MMC elements with no content but MessageSuccess: the schema keeps nothing of the
# response's values (a Change Payment Mode Response's balances, say), so the outcome
# is all there is to write.
NO_CONTENT_ELEMENTS = frozenset({
    "ActivateAuxiliaryLoadRsp", "ActivateEmergencyCreditRsp",
    "AddAuxiliaryLoadToBoostButtonRsp", "ArmSupplyRsp", "ClearEventLogRsp",
    "CommissionDeviceSynchroniseClockRsp", "ConfigureAlertBehaviourRsp",
    "DeactivateAuxiliaryLoadRsp", "DisablePrivacyPINRsp", "DisableSupplyRsp",
    "DisplayMessageRsp", "EnableSupplyRsp", "LimitAPCLevelRsp",
    "RemoveAuxiliaryLoadFromBoostButtonRsp", "RequestCHFSubGHzChannelScanRsp",
    "RequestCustomerIdentificationNumberRsp", "ResetAuxiliaryLoadRsp",
    "ResetMaximumDemandRegistersRsp", "ResetTariffBlockCounterMatrixRsp",
    "RestoreHANDeviceLogRsp", "RestrictAccessForChangeOfTenancyRsp",
    "SetAuxiliaryControllerStateRsp", "SetCHFSubGHzConfigurationRsp",
    "SetDeviceConfigurationExportMPANRsp", "SetDeviceConfigurationImportMPxNRsp",
    "SetElectricitySupplyTamperStateRsp", "SetMaximumDemandConfigurableTimePeriodRsp",
    "SetRandomisedOffsetLimitRsp", "TopUpDeviceRsp", "UpdateDebtRsp",
    "UpdateDeviceConfigurationALCDescriptionsRsp", "UpdateDeviceConfigurationALCSchedulerRsp",
    "UpdateDeviceConfigurationBillingCalendarRsp",
    "UpdateDeviceConfigurationDailyResettingOfTariffBlockCounterMatrixRsp",
    "UpdateDeviceConfigurationGasConversionRsp", "UpdateDeviceConfigurationGasFlowRsp",
    "UpdateDeviceConfigurationInstantaneousPowerThresholdRsp",
    "UpdateDeviceConfigurationLoadLimitingCounterResetRsp",
    "UpdateDeviceConfigurationLoadLimitingGeneralSettingsRsp",
    "UpdateDeviceConfigurationRMSVoltageCounterResetRsp",
    "UpdateDeviceConfigurationVoltageRsp", "UpdateHANDeviceLogRsp",
    "UpdateImportTariffPrimaryElementRsp", "UpdateImportTariffSecondaryElementRsp",
    "UpdateMeterBalanceRsp", "UpdatePaymentModeRsp", "UpdatePrepayConfigurationRsp",
    "UpdatePricePrimaryElementRsp", "UpdatePriceSecondaryElementRsp", "UpdateSupplierNameRsp",
})  # fmt: skip


# MMC elements whose content must name the commodity (or the kind of log) even when the
# device answered with an error and nothing else: the empty wrapper says which.
_REQUIRED_WRAPPERS = {
    "ReadInstantaneousImportRegistersRsp": "commodity",
    "ReadInstantaneousImportTOUMatricesRsp": "commodity",
    "ReadNetworkDataRsp": "commodity",
    "ReadPrepaymentDailyReadLogRsp": "commodity",
    "ReadTariffPrimaryElementRsp": "commodity",
    "RetrieveBillingCalendarTriggeredBillingDataLogRsp": "commodity",
    "RetrieveCoMOrTariffTriggeredBillingDataLogRsp": "commodity",
    "RetrieveDailyConsumptionLogRsp": "commodity",
    "ReadDeviceConfigurationMPxNRsp": "commodity",
    "ReadEventOrSecurityLogRsp": "Log",
    "ReadDeviceLogRsp": "DeviceLogEntries",
    "ReadDeviceConfigurationEventAndAlertBehavioursRsp": "settings",
}
_ALERT_SETTINGS_BY_USE_CASE = {
    "ECS25r1": "ElectricitySupplierAlertEventSettings",
    "ECS25r2": "ElectricityNetworkOperatorAlertEventSettings",
    "GCS20r": "GasSupplierAlertEventSettings",
}


def _required_wrapper(element: str, use_case: UseCase) -> tuple[Node, ...]:
    kind = _REQUIRED_WRAPPERS.get(element)
    if kind is None:
        return ()
    if kind == "commodity":
        kind = "Gas" if use_case.name.startswith("GCS") else "Electricity"
    elif kind == "settings":
        kind = _ALERT_SETTINGS_BY_USE_CASE.get(
            use_case.name, "ElectricitySupplierAlertEventSettings"
        )
    return (Node(kind),)


# A layout meeting a payload of the wrong shape (a list too short, a value of the
# wrong type) fails inside Python before it can say why; what that means is the
# device's payload does not fit its use case, so those failures become DecodeErrors here
# (GbcsError, itself a ValueError, is let through as raised).
_MISFITS = (ArithmeticError, IndexError, KeyError, TypeError, UnicodeDecodeError, ValueError)


class MmcOutputError(DecodeError):
    """The message is not one Parse and Correlate outputs (a command, say)."""


class UnsupportedVersionError(LookupError):
    """A DUIS version this P&C has no handler for."""


class MmcOutput(NamedTuple):
    xml: bytes
    typed: bool  # SMETSData or DeviceAlertContent written (not only GBCSData)
    values: int  # values written in typed elements
    authentication: Authentication
    note: str | None  # why the payload (or part of it) stayed opaque


class _Body(NamedTuple):
    nodes: tuple[Node, ...]  # children of ResponseMessage / DeviceAlertMessage, in order
    typed: bool
    values: int
    note: str | None


# ---- header ------------------------------------------------------------------------------


def _q(name: str) -> str:
    return f"{{{RA_NAMESPACE}}}{name}"


def _sub(parent: etree._Element, name: str, text: str | None = None) -> etree._Element:
    element = etree.SubElement(parent, _q(name))
    if text is not None:
        element.text = text
    return element


def _render_header(
    root: etree._Element, message: GbcsMessage, srv: str | None, version: str
) -> None:
    header = message.header
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
    if srv is not None:
        _sub(element, "ServiceReference", srv_reference(srv))
        _sub(element, "ServiceReferenceVariant", srv)
    if header.date_time is not None:
        _render_timestamp(element, header.date_time, version)


def srv_reference(variant: str) -> str:
    """'4.1.1' -> '4.1'; variants of two parts are their own reference ('11.2')."""
    parts = variant.split(".")
    return ".".join(parts[:2]) if len(parts) > 2 else variant


def _render_timestamp(parent: etree._Element, raw: bytes, version: str) -> None:
    moment = decode_dlms_datetime(raw)
    if moment is None:
        return  # a device clock field 'not specified': no timestamp beats a made-up one
    timestamp = _sub(parent, "Timestamp", format_datetime(moment))
    status = dlms_clock_status(raw)
    if version in _VERSIONS_WITH_CLOCK_STATUS and status is not None:
        # DLMS clock status bit 0 'invalid value', bit 1 'doubtful value'.
        label = "invalid" if status & 0x01 else "unreliable" if status & 0x02 else "reliable"
        timestamp.set("ClockStatus", label)


# ---- nodes -> XML --------------------------------------------------------------------------


def _write(parent: etree._Element, node: Node) -> None:
    element = _sub(parent, node.name, node.text)
    for key, value in node.attributes:
        element.set(key, value)
    for child in node.children:
        _write(element, child)


def _gbcs_data(raw: bytes, message: GbcsMessage, *, encrypted: bool) -> Node:
    # The whole message, so that a second pass has the header it needs to agree the key.
    name = message_code_name(message.header.message_code) or "GBCSMessage"
    attributes = (
        ("format", "encrypted" if encrypted else "plain"),
        ("sequence", "0"),
        ("name", name),
        ("type", "gbcs"),
    )
    return Node("GBCSData", base64.b64encode(raw).decode("ascii"), (), attributes)


# ---- responses -----------------------------------------------------------------------------


def choose_srv(use_case: UseCase | None, hint: str | None) -> str | None:
    """The SRV the response answers: the hint (from the request or the DUIS envelope)
    when the use case serves it, else the use case's only SRV, else unknown."""
    if use_case is None:
        return None
    if hint is not None and hint in use_case.srvs:
        return hint
    return use_case.srvs[0] if len(use_case.srvs) == 1 else None


def _reader_for(use_case: UseCase, element: str, payload: bytes) -> Reader:
    no_content = element in NO_CONTENT_ELEMENTS
    layout = LAYOUTS.get(use_case.code)
    if layout is not None and no_content:
        # One use case, two SRVs (ECS70, GCS28: 6.11 and 8.1.1), one element with no
        # content: the layout still knows whether the device succeeded.
        def outcome_only(source: Source) -> Reading:
            reading = layout(source)
            return Reading(reading.success, (), reading.debug)

        return outcome_only
    if layout is not None:
        return layout
    if payload[:1] == bytes([_DLMS_ACCESS_RESPONSE]):
        return lambda source: dlms_ack(source, content_has_no_element=no_content)
    if payload[:2] == _GBZ_PROFILE:
        return lambda source: gbz_ack(source, content_has_no_element=no_content)

    def no_reader(source: Source) -> Reading:
        raise NoLayout

    return no_reader


def _response_body(source: Source, raw: bytes, srv: str | None) -> _Body:
    message = source.message
    use_case = use_case_for(message.header.message_code)
    opaque = (_gbcs_data(raw, message, encrypted=False),)
    if use_case is None:
        return _Body(opaque, False, 0, "message code not in the use-case table")
    if srv is None:
        choices = ", ".join(use_case.srvs) or "none"
        note = f"{use_case.name} answers more than one SRV ({choices}): give the request or SRV"
        if not use_case.srvs:
            note = f"{use_case.name} answers no Service Request: the MMC schema has no element"
        return _Body(opaque, False, 0, note)
    element = RESPONSE_ELEMENTS.get(srv)
    if element is None:
        return _Body(opaque, False, 0, f"the MMC schema has no element for SRV {srv}")
    try:
        reading = _reader_for(use_case, element, message.payload)(source)
    except NoLayout:
        return _Body(opaque, False, 0, f"values of {use_case.name} are not decoded here")
    except NeedsKeys:
        encrypted = (_gbcs_data(raw, message, encrypted=True),)
        note = f"{use_case.name} values are encrypted: give the User's key to decrypt them"
        return _Body(encrypted, False, 0, note)
    except GbcsError:
        raise
    except _MISFITS as exc:
        raise DecodeError(f"{use_case.name} payload does not fit its use case: {exc}") from exc
    content = reading.content or _required_wrapper(element, use_case)
    success = ("MessageSuccess", "true" if reading.success else "false")
    rsp = Node(element, None, content, (success,))
    nodes: tuple[Node, ...] = (Node("SMETSData", None, (rsp,)),)
    if reading.debug is not None:
        nodes += (reading.debug,)
    return _Body(nodes, True, count_values([rsp]), None)


# ---- alerts --------------------------------------------------------------------------------


def _alert_body(source: Source, raw: bytes) -> _Body:
    try:
        return _decode_alert(source, raw)
    except GbcsError:
        raise
    except _MISFITS as exc:
        raise DecodeError(f"alert payload does not fit its form: {exc}") from exc


def _decode_alert(source: Source, raw: bytes) -> _Body:
    message = source.message
    payload = message.payload
    name = message_code_name(message.header.message_code)
    extra: tuple[Node, ...] = ()
    note = None
    if payload[:1] == bytes([_DLMS_DATA_NOTIFICATION]):
        header, notification = alerts.dlms_alert(payload)
        if any(_is_protected(value) for value in notification.content):
            # The billing data log (ECS68) travels encrypted: pass it on for a second pass.
            extra = (_gbcs_data(raw, message, encrypted=True),)
            note = "the alert's billing data log is encrypted: passed on for a second pass"
    elif payload[:2] == _GBZ_PROFILE:
        header = alerts.gbz_alert(payload)
    else:
        header, _ = alerts.asn1_alert(payload)
    content = alerts.alert_content(header, name)
    return _Body((*extra, content), True, count_values([content]), note)


def _is_protected(value: dlms.DlmsData) -> bool:
    try:
        return dlms.protected_data(value) is not None
    except DecodeError:
        return False


# ---- entry points --------------------------------------------------------------------------


def render_mmc_output(
    message: GbcsMessage,
    raw: bytes,
    version: str,
    credentials: Credentials | None = None,
    *,
    srv_hint: str | None = None,
) -> MmcOutput:
    """The MMC output document for one parsed response or alert; IntegrityError first
    if the credentials show it altered."""
    if version not in SUPPORTED_VERSIONS:
        raise UnsupportedVersionError(f"no MMC output for DUIS version {version!r}")
    cra = message.header.cra
    if cra is Cra.COMMAND:
        raise MmcOutputError("a command has no MMC output: only responses and alerts")
    authentication = authenticate(message, credentials)
    keys = credentials.user_keys if credentials is not None else None
    source = Source(message, keys)
    srv = None
    if cra is Cra.RESPONSE:
        srv = choose_srv(use_case_for(message.header.message_code), srv_hint)
        body = _response_body(source, raw, srv)
    else:
        body = _alert_body(source, raw)
    root = etree.Element(_q("GBCSResponse"), nsmap={"ra": RA_NAMESPACE})
    root.set("schemaVersion", version)
    root.append(etree.Comment(f" duisgw pc: {authentication} "))
    if body.note is not None:
        root.append(etree.Comment(f" duisgw pc: {body.note} "))
    _render_header(root, message, srv, version)
    container = _sub(
        _sub(root, "Body"), "ResponseMessage" if cra is Cra.RESPONSE else "DeviceAlertMessage"
    )
    for node in body.nodes:
        _write(container, node)
    xml = bytes(etree.tostring(root, xml_declaration=True, encoding="UTF-8"))
    return MmcOutput(xml, body.typed, body.values, authentication, body.note)


def parse_response(
    data: bytes,
    version: str,
    credentials: Credentials | None = None,
    *,
    srv_hint: str | None = None,
) -> bytes:
    """GBCS response or alert bytes -> MMC output XML bytes. GbcsError if malformed,
    IntegrityError (a GbcsError) if a MAC or signature fails with the keys given."""
    return render_mmc_output(parse_message(data), data, version, credentials, srv_hint=srv_hint).xml
