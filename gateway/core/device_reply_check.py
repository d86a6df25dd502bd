"""What the gateway checks of a device's reply before it signs the Service Response
(issue 18; sans-IO).

It holds no User keys, so it cannot check MACs or decrypt; it checks what it can, with
the same library call as an 8.13 Return Local Command Response
(`parse_correlate.device_response_check`): the reply is well-formed GBCS, it answers the
command sent (a response, from the command's device, to its originator or on its
behalf, with the command's counter and message code), and a signed reply's signature
verifies with the device's certificate where the gateway holds it
(`trust.device_certificate_dirs`).

A reply that fails is not passed on as the device's answer: the User gets E21. DUIS
publishes no code for "the device's response failed the DCC's checks" outside 8.13
(whose E081302/E081303 belong to that SRV); E21, "no response received from the
device", is what the User is told when no valid response came back, and it is in every
served version's ResponseCode list. The refusal reason is logged.
"""

from __future__ import annotations

from cryptography.hazmat.primitives.asymmetric import ec

from gateway.core.device import DeviceCommand, DeviceOutcome, DeviceReply
from parse_correlate.device_response_check import (
    DeviceResponseRefusedError,
    check_device_response,
)

REFUSED_REPLY_OUTCOME = DeviceOutcome.NO_RESPONSE  # -> E21


def checked_reply(
    command: DeviceCommand,
    reply: DeviceReply,
    device_signing_key: ec.EllipticCurvePublicKey | None,
) -> tuple[DeviceReply, DeviceResponseRefusedError | None]:
    """The reply to answer with, and why the device's own was refused (None if it was not)."""
    if reply.outcome is not DeviceOutcome.RESPONDED or reply.gbcs is None:
        return reply, None
    try:
        check_device_response(reply.gbcs, command.gbcs, device_signing_key)
    except DeviceResponseRefusedError as exc:
        return DeviceReply(REFUSED_REPLY_OUTCOME, queued_seconds=reply.queued_seconds), exc
    return reply, None
