"""The device transport interface: send one GBCS command, get the device's answer.

The embedded simulator (gateway/devkit/simulator.py) is the default implementation; a
real transport (a CSP adapter) implements the same two-method protocol and is
chosen by config. Transports never raise for device behaviour: an unreachable
device or a silent one is an outcome, not an exception. The one exception is our
own overload: a hub whose queue is full raises `QueueFull` at once, and the caller
answers the User.
"""

from __future__ import annotations

import datetime as dt
import enum
from typing import Literal, Protocol

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


class DeviceTransport(Protocol):
    async def send(self, command: DeviceCommand) -> DeviceReply:
        """Deliver the command and wait for the device's answer (or its absence)."""
        ...


class QueueFull(Exception):
    """The hub's queue for this class (or this User's share of it) is full: the DCC is
    overloaded for that hub. Raised at once, never after a wait; the caller answers."""

    def __init__(
        self,
        hub_id: Eui64,
        priority: Priority,
        originator: Eui64,
        scope: Literal["class", "user"],
        limit: int,
    ) -> None:
        self.hub_id, self.priority, self.originator = hub_id, priority, originator
        self.scope, self.limit = scope, limit
        whose = f"User {originator}'s share of " if scope == "user" else ""
        super().__init__(
            f"hub {hub_id}: {whose}the {priority.name} queue is full ({limit} commands)"
        )
