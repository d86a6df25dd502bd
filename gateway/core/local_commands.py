"""Commands for local delivery and the device responses Users bring back (sans-IO).

CommandVariants 2 and 6 (the Non-Device Service) answer with the GBCS command a
CV 1 (or, for a Signed Pre-Command, a CV 5) would have sent, in `LocalCommand`, for
the User to deliver over the HAN; nothing goes over the SM WAN. The device's answer
comes back to the DCC as SRV 8.13 Return Local Command Response
(`ReturnLocalCommandResponse`: optional `OriginalRequestID`, required
`DeviceGBCSResponse`), and the gateway turns it into the Service Response for the
original request, as if the device had answered over the SM WAN.

So every command issued for local delivery is remembered (`IssuedLocalCommand`, in a
store behind `gateway.stores.local_commands.LocalCommandStore`) until its response
comes back or it expires. CV 3 and 7 (command over the SM WAN and a local copy) are
not remembered: their device answer comes through the Receive Response Service, as
the XSD's CommandVariant table says ("Response WS: RRS"), and one command cannot be
answered twice (the device refuses a repeated counter).

An 8.13 is checked in this order, the first failure answering:

  E081301  it matches no open local command of this User: the OriginalRequestID, or
           (without one) the response's device, recipient and counter, name no command
           issued for local delivery to this User that is still open (never issued,
           expired, already returned, or another User's)
  E081302  the response does not answer that command: not GBCS, not a response, or
           its originator, recipient, counter or message code differ from the command
           issued (parse_correlate.device_response_check)
  E081303  the device signed the response and the signature does not verify with the
           device's certificate (checked where the gateway holds it)

The XSDs (5.0 to 5.4) define E081301-E081303 for 8.13 without saying what they mean,
and no public source found does: the meanings above are this gateway's, documented
here and in the README.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
from typing import Final, NamedTuple

import msgspec
from cryptography.hazmat.primitives.asymmetric import ec
from lxml import etree

from gateway.core.outcome import Acknowledge, Verified
from mmc.identifiers import Eui64, IdentifierError, RequestId, parse_request_id
from parse_correlate.device_response_check import (
    CheckedResponse,
    DeviceResponseRefusedError,
    RefusalReason,
    check_device_response,
)
from parse_correlate.gbcs import GbcsMessage, parse_message
from parse_correlate.gbcs_bytes import GbcsError

RETURN_LOCAL_COMMAND_RESPONSE: Final = "8.13"
NO_OPEN_LOCAL_COMMAND: Final = "E081301"
RESPONSE_DOES_NOT_ANSWER: Final = "E081302"
DEVICE_SIGNATURE_INVALID: Final = "E081303"
MAX_DEVICE_RESPONSE_CHARS: Final = 1 << 21  # base64 of a GBCS message (1 MiB at most)

_ORIGINAL_REQUEST_ID: Final = "OriginalRequestID"
_DEVICE_GBCS_RESPONSE: Final = "DeviceGBCSResponse"


class IssuedLocalCommand(msgspec.Struct, frozen=True, kw_only=True):
    """A command handed to a User for local delivery, open until answered or expired."""

    request_id: str  # originator:target:counter, as the RequestID is written
    version: str  # the DUIS version of the request: the Service Response's version
    srv_variant: str
    command_variant: int
    gbcs: bytes  # the command exactly as returned in LocalCommand/GBCSPayload
    issued_at: dt.datetime
    expires_at: dt.datetime

    @property
    def key(self) -> RequestId:
        return parse_request_id(self.request_id)


def issued_record(
    request: Verified, gbcs: bytes, now: dt.datetime, ttl_seconds: float
) -> IssuedLocalCommand:
    return IssuedLocalCommand(
        request_id=str(request.header.request_id),
        version=request.route.version,
        srv_variant=request.srv.variant,
        command_variant=request.header.command_variant,
        gbcs=gbcs,
        issued_at=now,
        expires_at=now + dt.timedelta(seconds=ttl_seconds),
    )


class ReturnedResponse(NamedTuple):
    """An 8.13's body: the device's response, and which command it answers."""

    key: RequestId  # the RequestID of the local command it answers
    response: bytes  # DeviceGBCSResponse, decoded
    message: GbcsMessage


def returned_response(request: Verified) -> ReturnedResponse:
    """Read the 8.13 body and find the local command it claims to answer; Acknowledge
    with E081302 (not a GBCS response) or E081301 (not this User's) otherwise."""
    user = request.header.request_id.originator
    raw = _decode_response(_text(request.body, _DEVICE_GBCS_RESPONSE))
    try:
        message = parse_message(raw)
    except GbcsError as exc:
        raise _refused(RESPONSE_DOES_NOT_ANSWER, f"DeviceGBCSResponse is not GBCS: {exc}") from None
    original = _text(request.body, _ORIGINAL_REQUEST_ID)
    if original:
        try:
            key = parse_request_id(original)
        except IdentifierError as exc:
            raise _refused(NO_OPEN_LOCAL_COMMAND, f"OriginalRequestID: {exc}") from None
        if key.originator != user:
            raise _refused(
                NO_OPEN_LOCAL_COMMAND, f"OriginalRequestID {key} is not a request of {user}"
            )
    else:
        key = _key_from_response(message, user)
    return ReturnedResponse(key, raw, message)


def check_returned(
    returned: ReturnedResponse,
    issued: IssuedLocalCommand | None,
    now: dt.datetime,
    device_signing_key: ec.EllipticCurvePublicKey | None,
) -> CheckedResponse:
    """The returned response against the command issued (see the module's order)."""
    if issued is None or issued.expires_at <= now:
        why = "expired" if issued is not None else "none issued, or already returned"
        raise _refused(NO_OPEN_LOCAL_COMMAND, f"no open local command {returned.key} ({why})")
    try:
        return check_device_response(returned.response, issued.gbcs, device_signing_key)
    except DeviceResponseRefusedError as exc:
        code = (
            DEVICE_SIGNATURE_INVALID
            if exc.reason is RefusalReason.SIGNATURE_INVALID
            else RESPONSE_DOES_NOT_ANSWER
        )
        raise _refused(code, f"response to {returned.key}: {exc}") from None


def _key_from_response(message: GbcsMessage, user: Eui64) -> RequestId:
    """Without OriginalRequestID: the device's response names its command by who sent it,
    to whom, and the command's counter (GBCS 4.3.1)."""
    header = message.header
    if header.recipient == user:
        return RequestId(user, header.originator, header.originator_counter)
    counter = header.supplementary_remote_party_counter
    if header.supplementary_remote_party == user and counter is not None:
        return RequestId(user, header.originator, counter)
    raise _refused(
        NO_OPEN_LOCAL_COMMAND, f"the response is addressed to {header.recipient}, not {user}"
    )


def _decode_response(text: str) -> bytes:
    if not text or len(text) > MAX_DEVICE_RESPONSE_CHARS:
        raise _refused(RESPONSE_DOES_NOT_ANSWER, "DeviceGBCSResponse is empty or too long")
    try:
        return base64.b64decode("".join(text.split()), validate=True)
    except (binascii.Error, ValueError):
        raise _refused(RESPONSE_DOES_NOT_ANSWER, "DeviceGBCSResponse is not base64") from None


def _text(body: etree._Element, local_name: str) -> str:
    for element in body.iter():
        if isinstance(element.tag, str) and etree.QName(element).localname == local_name:
            return (element.text or "").strip()
    return ""


def _refused(code: str, reason: str) -> Acknowledge:
    return Acknowledge("dispatch", code, reason)
