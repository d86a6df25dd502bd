"""Device alerts, on their way to a User (sans-IO): who gets one, with which code, under
which message id, or why nobody does.

A device raises a GBCS alert (CRA flag "alert") addressed to one User: the grouping
header's recipient is the Business Target (the User ID), its originator the device, and
its originator counter numbers the device's alerts. The gateway passes it on in a
signed DUIS `sr:Response` whose Body is a `DeviceAlertMessage` (AlertCode, GBCSPayload),
stored for the User's Receive Response URL like every asynchronous answer.

`route_alert` decides, from the alert's bytes and the Users registered now:
- the User: the recipient, which must be a registered User ID not withdrawn;
- the alert code, read from the payload in the three forms GBCS alerts take (DLMS
  data-notification, GBZ alert, ASN.1), as Parse and Correlate reads it
  (parse_correlate/mmc_output.py, parse_correlate/decode/alerts.py);
- the message id `alert:<device>:<originator counter>`, so an alert handed over twice
  (a reply seen by two nodes, an estate that repeats itself) is stored once;
- the DUIS ResponseID `<device>:<User>:<counter>` (the alert's own identity, in the
  RequestID form DUIS uses for it).

Anything else is a `RefusedAlert` with a stable reason (a metric label) and a detail
for the log, never an exception: the bytes come from the estate, and one bad alert
must not stop a job's answer or the estate link.

Where the gateway holds the device's signing certificate, a signed alert's signature
is checked (as a signed device response is); MACs need the User's keys, which the
gateway does not hold.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from typing import Final

import msgspec
from cryptography.hazmat.primitives.asymmetric import ec

from gateway.core.registry import UserRegistry
from mmc.identifiers import Eui64
from parse_correlate.decode import asn1, dlms, gbz
from parse_correlate.gbcs import Cra, GbcsMessage, parse_message
from parse_correlate.gbcs_bytes import GbcsError
from parse_correlate.integrity import Credentials, IntegrityError, authenticate

DLMS_DATA_NOTIFICATION: Final = 0x0F
GBZ_PROFILE: Final = b"\x01\x09"
MAX_ALERT_CODE: Final = 0xFFFF
# What a hostile or broken payload can raise from the decoders besides GbcsError.
_MISFITS = (ArithmeticError, IndexError, KeyError, TypeError, UnicodeDecodeError, ValueError)


class AlertRefusal(enum.StrEnum):
    MALFORMED = "malformed"  # not a GBCS message
    NOT_AN_ALERT = "not_an_alert"  # a command or a response, not an alert
    NO_ALERT_CODE = "no_alert_code"  # the payload's alert code cannot be read
    WRONG_DEVICE = "wrong_device"  # its originator is not the device the estate named
    SIGNATURE_INVALID = "signature_invalid"  # signed, and the device's key says altered
    UNKNOWN_RECIPIENT = "unknown_recipient"  # no registered User has that ID
    RECIPIENT_WITHDRAWN = "recipient_withdrawn"  # the User ID is withdrawn


class RoutedAlert(msgspec.Struct, frozen=True, kw_only=True):
    """An alert to store for `user_id`."""

    user_id: Eui64
    device_id: Eui64
    counter: int  # the device's originator counter
    alert_code: int  # 0..0xFFFF
    gbcs: bytes  # the alert exactly as the device sent it

    @property
    def message_id(self) -> str:
        return alert_message_id(self.device_id, self.counter)

    @property
    def response_id(self) -> str:
        return f"{self.device_id}:{self.user_id}:{self.counter}"

    @property
    def alert_code_hex(self) -> str:
        return f"{self.alert_code:04X}"


class RefusedAlert(msgspec.Struct, frozen=True, kw_only=True):
    """An alert nobody gets, and why (`reason` is a bounded metric label)."""

    reason: AlertRefusal
    detail: str
    device_id: Eui64 | None = None
    recipient: Eui64 | None = None


def alert_message_id(device_id: Eui64, counter: int) -> str:
    return f"alert:{device_id}:{counter}"


def route_alert(
    gbcs: bytes,
    users: UserRegistry,
    *,
    device_id: Eui64 | None = None,
    device_signing_keys: Mapping[Eui64, ec.EllipticCurvePublicKey] | None = None,
) -> RoutedAlert | RefusedAlert:
    """Where one GBCS alert goes. `device_id`: the device the estate says raised it
    (an `alert` frame names one), checked against the alert's originator;
    `device_signing_keys`: the devices' signing keys the gateway holds, by EUI-64."""
    try:
        message = parse_message(gbcs)
    except GbcsError as exc:
        return RefusedAlert(reason=AlertRefusal.MALFORMED, detail=str(exc), device_id=device_id)
    header = message.header
    originator, recipient = header.originator, header.recipient
    if header.cra is not Cra.ALERT:
        return RefusedAlert(
            reason=AlertRefusal.NOT_AN_ALERT,
            detail=f"CRA flag {header.cra.name.lower()}, not alert",
            device_id=originator,
            recipient=recipient,
        )
    if device_id is not None and device_id.upper() != originator:
        return RefusedAlert(
            reason=AlertRefusal.WRONG_DEVICE,
            detail=f"the estate named device {device_id}; the alert's originator is {originator}",
            device_id=originator,
            recipient=recipient,
        )
    try:
        code = alert_code(message)
    except (GbcsError, *_MISFITS) as exc:
        return RefusedAlert(
            reason=AlertRefusal.NO_ALERT_CODE,
            detail=f"alert code unreadable: {exc}",
            device_id=originator,
            recipient=recipient,
        )
    device_signing_key = (device_signing_keys or {}).get(originator)
    if message.signature and device_signing_key is not None:
        try:
            authenticate(message, Credentials(device_signing_key=device_signing_key))
        except IntegrityError as exc:
            return RefusedAlert(
                reason=AlertRefusal.SIGNATURE_INVALID,
                detail=str(exc),
                device_id=originator,
                recipient=recipient,
            )
    user = users.get(recipient)
    if user is None:
        return RefusedAlert(
            reason=AlertRefusal.UNKNOWN_RECIPIENT,
            detail=f"alert {code:04X} from {originator} is addressed to {recipient}, "
            "which is no registered User",
            device_id=originator,
            recipient=recipient,
        )
    if user.status == "withdrawn":
        return RefusedAlert(
            reason=AlertRefusal.RECIPIENT_WITHDRAWN,
            detail=f"alert {code:04X} from {originator} is addressed to {recipient}, "
            "a withdrawn User ID",
            device_id=originator,
            recipient=recipient,
        )
    return RoutedAlert(
        user_id=user.user_id,
        device_id=originator,
        counter=header.originator_counter,
        alert_code=code,
        gbcs=gbcs,
    )


def alert_code(message: GbcsMessage) -> int:
    """The alert code the payload carries, in whichever of the three forms it has;
    GbcsError (DecodeError) if it has none that reads."""
    payload = message.payload
    if payload[:1] == bytes([DLMS_DATA_NOTIFICATION]):
        code = dlms.decode_data_notification(payload).alert_code
    elif payload[:2] == GBZ_PROFILE:
        code = gbz.decode_gbz_alert(payload).alert_code
    else:
        fields = asn1.read_one(payload).children()
        if not fields:
            raise GbcsError("an ASN.1 alert starts with its code")
        code = fields[0].integer()
    if not 0 <= code <= MAX_ALERT_CODE:
        raise GbcsError(f"alert code {code} is not two bytes")
    return code
