"""Dispatch decisions (sans-IO): how a request is answered, which command goes out.

`answer_mode` is the one place the CommandVariant decides between a synchronous
answer and an acknowledgement now with the Service Response later:

    CV 8 (non-device SRVs)  NON_DEVICE    answered here from the inventory (signed)
    CV 4                    TRANSFORM     the Pre-Command goes back in a signed I0
    CV 2, 6                 SYNC_DEVICE   the device's answer on the same exchange
    CV 1, 3, 5, 7           ASYNC_DEVICE  I99 now; the Service Response follows

`device_command` builds what goes to the device (GBCS, priority class, hub);
`check_signed_pre_command` is the admission stage for CV 5/6/7: the SignedPreCommand
must answer the Pre-Command this gateway issued for the same RequestID, and the
User's role key must have signed it. The replay store hands that Pre-Command over
as it spends the CV 4's allowance; the check runs before the thresholds stage, so
dispatch (now, after a quarantine release, or for a journaled job after a restart)
only ever sends a SignedPreCommand that correlated.
"""

from __future__ import annotations

import base64
import datetime as dt
import enum
from typing import Final

from lxml import etree

from gateway.core.certstore import CertStore
from gateway.core.device import DeviceCommand, Priority
from gateway.core.outcome import Acknowledge, Verified
from gateway.core.registry import Inventory
from mmc.catalogue import SIGNED_PRE_COMMAND_VARIANTS, Srv
from parse_correlate.commands import CommandError, CommandFacts, DeviceType, build_command
from parse_correlate.correlate import CorrelationError
from parse_correlate.correlate import Reason as CorrelationReason

TRANSFORM_VARIANT: Final = 4
SYNC_DEVICE_VARIANTS: Final = frozenset({2, 6})
PREPAYMENT_SRVS: Final = frozenset({"2.1", "2.2", "2.3", "2.5"})
# SMKI role codes of User role certificates that may sign a Pre-Command (not 87/89).
ROLE_SIGNING_CODES: Final = ("02", "03", "04", "08", "7F")


class AnswerMode(enum.Enum):
    NON_DEVICE = "non_device"
    TRANSFORM = "transform"
    SYNC_DEVICE = "sync_device"
    ASYNC_DEVICE = "async_device"


def answer_mode(command_variant: int, srv: Srv) -> AnswerMode:
    if srv.non_device:
        return AnswerMode.NON_DEVICE
    if command_variant == TRANSFORM_VARIANT:
        return AnswerMode.TRANSFORM
    if command_variant in SYNC_DEVICE_VARIANTS:
        return AnswerMode.SYNC_DEVICE
    return AnswerMode.ASYNC_DEVICE


class PreCommandMismatch(CommandError):
    """A SignedPreCommand that does not answer a Pre-Command we issued: E12."""


def device_command(request: Verified, inventory: Inventory, now: dt.datetime) -> DeviceCommand:
    """The device command. A SignedPreCommand's GBCS is sent as the User signed it:
    `check_signed_pre_command` passed it before it was admitted (or journaled).
    Raises CommandError when no command can be built from the request (E11)."""
    header = request.header
    device = inventory.get(header.request_id.target)
    device_type = device.device_type if device is not None else "ESME"
    if header.command_variant in SIGNED_PRE_COMMAND_VARIANTS:
        gbcs = signed_pre_command_payload(request.body)
    else:
        built = build_command(
            request.srv.variant,
            header.request_id,
            CommandFacts(
                device_type=_command_device_type(device_type),
                execution_date_time=request.facts.execution_datetime,
            ),
            originator_counter=header.request_id.counter,
            now=now,
            critical=request.srv.critical,
        )
        gbcs = built.gbcs
    return DeviceCommand(
        request_id=header.request_id,
        srv_variant=request.srv.variant,
        device_id=header.request_id.target,
        device_type=device_type,
        hub_id=device.chf_id if device is not None else None,
        gbcs=gbcs,
        priority=priority_for(request),
        not_before=request.facts.execution_datetime,
    )


def priority_for(request: Verified) -> Priority:
    """User requests are prepayment/critical, future-dated or on-demand; DCC_SCHEDULED
    is the class of schedule executions (bulk reads the DCC runs itself)."""
    srv = request.srv
    if srv.variant in PREPAYMENT_SRVS or srv.critical:
        return Priority.PREPAYMENT_AND_CRITICAL
    if request.facts.execution_datetime is not None:
        return Priority.FUTURE_DATED
    return Priority.ON_DEMAND


def check_signed_pre_command(
    request: Verified, issued: bytes | None, certstore: CertStore, now: dt.datetime
) -> None:
    """Acknowledge with E12 unless the CV 5/6/7's signed GBCS answers the Pre-Command
    `issued` for its RequestID and the User's role key signed it.

    One attempt per Pre-Command: its allowance is spent whatever the verdict, so a
    User whose signed copy was refused starts again with a new CV 4 request.
    """
    try:
        signed = signed_pre_command_payload(request.body)
        if issued is None:
            raise PreCommandMismatch("no Pre-Command was issued for this RequestID")
        request.route.handlers.correlate(issued, signed)
        _verify_user_signature(request, signed, certstore, now)
    except CorrelationError as exc:
        reason = f"SignedPreCommand refused: {exc.reason}"
    except PreCommandMismatch as exc:
        reason = str(exc)
    else:
        return
    raise Acknowledge("pre_command", "E12", reason)


def signed_pre_command_payload(body: etree._Element) -> bytes:
    for element in body.iter():
        if isinstance(element.tag, str) and etree.QName(element).localname == "GBCSPayload":
            try:
                return base64.b64decode((element.text or "").strip(), validate=True)
            except ValueError:
                raise PreCommandMismatch("SignedPreCommand GBCSPayload is not base64") from None
    raise PreCommandMismatch("SignedPreCommand has no GBCSPayload")


def _verify_user_signature(
    request: Verified, signed: bytes, certstore: CertStore, now: dt.datetime
) -> None:
    """The GBCS signature must verify with one of the originator's role digital-signing
    certificates (never the XML-signing one), valid now."""
    originator = request.header.request_id.originator
    for role in ROLE_SIGNING_CODES:
        for cert in certstore.find(originator, role, "digitalSignature"):
            if cert.not_before <= now <= cert.not_after and not certstore.is_revoked(cert):
                try:
                    request.route.handlers.verify_pre_command_signature(signed, cert.public_key)
                except CorrelationError:
                    continue
                return
    raise CorrelationError(
        CorrelationReason.SIGNATURE_INVALID,
        f"no valid role signing certificate of {originator} verifies the Pre-Command",
    )


def _command_device_type(device_type: str) -> DeviceType:
    try:
        return DeviceType(device_type)
    except ValueError:
        return DeviceType.ESME
