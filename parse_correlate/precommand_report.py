"""Is this Pre-Command the command the User asked for? The checks, their report, and
the SignedPreCommand request built from the CV 4 request once they pass (sans-IO).

`duisgw pc correlate` (parse_correlate/cli.py) reads the files and calls these.
"""

from __future__ import annotations

import base64
import copy
import datetime as dt
import enum
from typing import NamedTuple

from lxml import etree

from mmc.applicability import applicable_device_types
from mmc.catalogue import SERVED_VERSIONS, UnknownVersion, load_catalogue
from mmc.identifiers import RequestId
from parse_correlate.commands import SIMULATED_MESSAGE_CODE, CommandFacts, DeviceType, build_command
from parse_correlate.gbcs import BlockKind, Cra, GbcsMessage
from parse_correlate.gbcs_codes import message_code_name
from parse_correlate.inputs import SR_NS, DuisRequest, GbcsInput

__all__ = ["DS_NS", "SR_NS", "Check", "DuisRequest", "Verdict"]

DS_NS = "http://www.w3.org/2000/09/xmldsig#"
TRANSFORM_VARIANT = 4  # the CV whose answer is a Pre-Command
# build_command wants "now" only to decide when to hold a command; the message code
# check reads the code alone, so any fixed instant gives the same answer.
_ANY_INSTANT = dt.datetime(2000, 1, 1, tzinfo=dt.UTC)


class Verdict(enum.StrEnum):
    OK = "OK"
    MISMATCH = "MISMATCH"
    SKIPPED = "SKIPPED"


class Check(NamedTuple):
    name: str
    verdict: Verdict
    detail: str


def check_pre_command(
    request: DuisRequest, message: GbcsMessage, response_request_id: str | None
) -> list[Check]:
    """What the User checks before signing: is this the command it asked for?"""
    rid, header = request.request_id, message.header
    counter = str(header.originator_counter)
    if response_request_id is None:
        response = Check("response RequestID", Verdict.SKIPPED, "raw GBCS: no DUIS response")
    else:
        response = _equal("response RequestID", response_request_id.strip(), str(rid), "request")
    return [
        _command_variant_check(request.command_variant),
        response,
        _equal("recipient", header.recipient, rid.target, "request target"),
        _equal("originator", header.originator, rid.originator, "request originator"),
        # The gateway uses the RequestID counter as the GBCS originator counter
        # (gateway.edge.dispatch: build_command(originator_counter=request_id.counter)).
        _equal("originator counter", counter, str(rid.counter), "request counter"),
        _message_code_check(request.srv_variant, rid, header.message_code),
        _unsigned_command_check(message),
    ]


def _command_variant_check(variant: str) -> Check:
    if variant == str(TRANSFORM_VARIANT):
        return Check("command variant", Verdict.OK, "request CV 4, answered with a Pre-Command")
    detail = f"request CV {variant or '(none)'}, but only CV 4 is answered with a Pre-Command"
    return Check("command variant", Verdict.MISMATCH, detail)


def _equal(name: str, found: str, wanted: str, wanted_label: str) -> Check:
    if found == wanted:
        return Check(name, Verdict.OK, f"{found} = {wanted_label}")
    return Check(name, Verdict.MISMATCH, f"{found or '(none)'}, but {wanted_label} is {wanted}")


def _describe_code(code: int) -> str:
    name = message_code_name(code)
    return f"0x{code:04X}" + (f" ({name})" if name else "")


def _message_code_check(srv_variant: str, request_id: RequestId, code: int) -> Check:
    """Compare with the use cases parse_correlate.commands knows for the SRV, on the device types
    the SRV applies to. It knows few (the rest get a simulated command, code 0xFFFF), so
    when a device type's use case is unknown, a code outside the list cannot be judged."""
    applicable = applicable_device_types(srv_variant)
    device_types = [kind for kind in DeviceType if kind in applicable] or list(DeviceType)
    built = [
        build_command(srv_variant, request_id, CommandFacts(device_type=device_type),
                      originator_counter=request_id.counter, now=_ANY_INSTANT, critical=True)
        for device_type in device_types
    ]  # fmt: skip
    known = {command.message_code for command in built if command.use_case is not None}
    unknown = [
        kind for kind, command in zip(device_types, built, strict=True) if not command.use_case
    ]
    found, srv = _describe_code(code), f"SRV {srv_variant}"
    expected = ", ".join(sorted(_describe_code(c) for c in known))
    if code in known:
        return Check("message code", Verdict.OK, f"{found}, a use case of {srv}")
    if unknown and code == SIMULATED_MESSAGE_CODE:
        return Check("message code", Verdict.OK, f"{found}, this gateway's simulated {srv}")
    if unknown:
        not_known = f"not {expected}; " if known else ""
        detail = f"{found}: {not_known}no use case known for {srv} on {', '.join(unknown)}"
        return Check("message code", Verdict.SKIPPED, detail)
    return Check("message code", Verdict.MISMATCH, f"{found}, but {srv} uses {expected}")


def _unsigned_command_check(message: GbcsMessage) -> Check:
    problems = []
    if message.kind is not BlockKind.GENERAL_SIGNING:
        problems.append(f"a {message.kind} block (already MACed)")
    if message.header.cra is not Cra.COMMAND:
        problems.append(f"CRA flag {message.header.cra.name.lower()}")
    if message.signature:  # b"" is the zero-length form signing replaces
        problems.append("already signed")
    if problems:
        return Check("unsigned command", Verdict.MISMATCH, "; ".join(problems))
    return Check("unsigned command", Verdict.OK, "general-signing command, no signature")


def format_report(
    request: DuisRequest, source: GbcsInput, message: GbcsMessage, checks: list[Check]
) -> str:
    header = message.header
    signature = {None: "no signature field", b"": "zero-length signature field"}.get(
        message.signature, "signed"
    )
    fields = (
        ("request", f"{request.request_id}  SRV {request.srv_variant}"
                    f"  CV {request.command_variant}"),
        ("pre-command", f"{len(source.gbcs)} bytes ({source.form}), {message.kind}"
                        f" {header.cra.name.lower()}, {signature}"),
        ("originator", header.originator),
        ("recipient", header.recipient),
        ("originator counter", str(header.originator_counter)),
        ("message code", _describe_code(header.message_code)),
    )  # fmt: skip
    lines = [f"{label:<29}{value}" for label, value in fields]
    lines += [f"{check.verdict:<9}{check.name:<20}{check.detail}" for check in checks]
    failed = sum(check.verdict is Verdict.MISMATCH for check in checks)
    lines.append(f"DOES NOT CORRELATE: {failed} check(s) failed" if failed else "correlates")
    return "\n".join(lines) + "\n"


def signed_pre_command_request(
    request: DuisRequest, signed_gbcs: bytes, command_variant: int
) -> bytes:
    """The CV 4 request turned into its SignedPreCommand: same header and RequestID, the
    new CV, the body replaced and the XML signature dropped (`duisgw send` re-signs)."""
    root = copy.deepcopy(request.root)
    for signature in root.findall(f"{{{DS_NS}}}Signature"):
        root.remove(signature)
    variant = root.find(f"{{{SR_NS}}}Header/{{{SR_NS}}}CommandVariant")
    body = root.find(f"{{{SR_NS}}}Body")
    if variant is None or body is None:
        raise ValueError("the request has no sr:Header/sr:CommandVariant or no sr:Body")
    variant.text = str(command_variant)
    execution = body.find(f"{{{SR_NS}}}*/{{{SR_NS}}}ExecutionDateTime")
    for child in list(body):
        body.remove(child)
    body.text = None
    signed = etree.SubElement(body, f"{{{SR_NS}}}SignedPreCommand")
    if execution is not None and _dsp_future_dated(request):
        etree.SubElement(signed, f"{{{SR_NS}}}ExecutionDateTime").text = execution.text
    payload = etree.SubElement(signed, f"{{{SR_NS}}}GBCSPayload")
    payload.text = base64.b64encode(signed_gbcs).decode("ascii")
    return bytes(etree.tostring(root, xml_declaration=True, encoding="UTF-8"))


def _dsp_future_dated(request: DuisRequest) -> bool:
    """Whether the SignedPreCommand repeats the request's ExecutionDateTime (its type
    extends FutureDatedAbstractType). Only when the DCC holds the command (the SRV's
    "DSP" pattern): under the "Device" pattern the date is inside the signed GBCS and
    the DCC must send at once. The patterns are the same in every served version, so an
    unknown one is read from the newest."""
    try:
        catalogue = load_catalogue(request.version)
    except UnknownVersion:
        catalogue = load_catalogue(SERVED_VERSIONS[-1])
    srv = catalogue.srvs.get(request.srv_variant)
    return srv is not None and "DSP" in srv.future_dated
