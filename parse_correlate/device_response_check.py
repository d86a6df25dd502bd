"""What the gateway can check of a device's response before it signs the Service
Response (sans-IO): the library call behind its future hook.

The gateway holds no User keys, so it cannot check MACs or decrypt values. It can
check that the response is well-formed GBCS, that it answers the command it sent
(`response_correlation`), and, where the device signed the response, the signature
with the device's certificate from the SMKI repository (`integrity`). Each refusal
carries a stable reason for the gateway to map to its DUIS answer and metrics.
"""

from __future__ import annotations

import enum
from typing import NamedTuple

from cryptography.hazmat.primitives.asymmetric import ec

from parse_correlate.gbcs import GbcsMessage, parse_message
from parse_correlate.gbcs_bytes import GbcsError
from parse_correlate.integrity import Authentication, Credentials, IntegrityError, authenticate
from parse_correlate.response_correlation import (
    ResponseMismatchError,
    correlate_response,
    facts_from_command,
)


class RefusalReason(enum.StrEnum):
    MALFORMED = "malformed"  # not GBCS, or the command sent is not a command
    UNCORRELATED = "uncorrelated"  # does not answer the command sent
    SIGNATURE_INVALID = "signature_invalid"  # signed, and the signature does not verify


class DeviceResponseRefusedError(GbcsError):
    def __init__(self, reason: RefusalReason, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason


class CheckedResponse(NamedTuple):
    message: GbcsMessage
    authentication: Authentication  # SIGNATURE_VERIFIED, or NOT_AUTHENTICATED (MACed)


def check_device_response(
    response: bytes,
    command_sent: bytes,
    device_signing_key: ec.EllipticCurvePublicKey | None,
) -> CheckedResponse:
    """Framing, correlation with the command sent, then the device's signature where
    the response carries one; DeviceResponseRefusedError names the first failure."""
    try:
        message = parse_message(response)
        facts = facts_from_command(parse_message(command_sent))
    except GbcsError as exc:
        raise DeviceResponseRefusedError(RefusalReason.MALFORMED, str(exc)) from None
    try:
        correlate_response(message, facts)
    except ResponseMismatchError as exc:
        raise DeviceResponseRefusedError(RefusalReason.UNCORRELATED, str(exc)) from None
    if message.signature and device_signing_key is not None:
        try:
            authentication = authenticate(
                message, Credentials(device_signing_key=device_signing_key)
            )
        except IntegrityError as exc:
            raise DeviceResponseRefusedError(RefusalReason.SIGNATURE_INVALID, str(exc)) from None
        return CheckedResponse(message, authentication)
    return CheckedResponse(message, Authentication.NOT_AUTHENTICATED)
