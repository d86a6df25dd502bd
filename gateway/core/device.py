"""What travels to a device and back: the command, its priority class, the reply (values).

The transport that carries them is gateway/edge/transport.py (the simulator in the
dev kit is one); the decisions about them (which command, which class, which code a
reply is answered with) are made over these values in the core.
"""

from __future__ import annotations

import datetime as dt
import enum

import msgspec

from mmc.identifiers import Eui64, RequestId


class Priority(enum.IntEnum):
    """Queue classes for commands to a Communications Hub (SEC H3.27): lower goes first."""

    PREPAYMENT_AND_CRITICAL = 0
    ON_DEMAND = 1
    FUTURE_DATED = 2
    DCC_SCHEDULED = 3


class DeviceCommand(msgspec.Struct, frozen=True):
    request_id: RequestId
    srv_variant: str
    device_id: Eui64
    device_type: str
    hub_id: Eui64 | None  # the CHF the command travels through
    gbcs: bytes
    priority: Priority
    not_before: dt.datetime | None = None


class DeviceOutcome(enum.StrEnum):
    RESPONDED = "responded"  # -> I0 with the GBCS response
    UNREACHABLE = "unreachable"  # -> E20
    NO_RESPONSE = "no_response"  # -> E21
    FUTURE_DATED_TIMEOUT = "future_dated_timeout"  # -> E30


OUTCOME_CODES = {
    DeviceOutcome.RESPONDED: "I0",
    DeviceOutcome.UNREACHABLE: "E20",
    DeviceOutcome.NO_RESPONSE: "E21",
    DeviceOutcome.FUTURE_DATED_TIMEOUT: "E30",
}


class DeviceReply(msgspec.Struct, frozen=True):
    outcome: DeviceOutcome
    gbcs: bytes | None = None  # the device's response (CRA response)
    alerts: tuple[bytes, ...] = ()  # device alerts raised alongside
    # Seconds the command waited for its hub (ready to served), where the transport knows.
    queued_seconds: float | None = None
