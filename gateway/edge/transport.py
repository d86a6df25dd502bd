"""The device transport interface: send one GBCS command, get the device's answer.

The embedded simulator (gateway/devkit/simulator.py) is the default implementation; a
real transport (a CSP adapter) implements the same two-method protocol and is
chosen by config. Transports never raise for device behaviour: an unreachable
device or a silent one is an outcome, not an exception. The one exception is our
own overload: a hub whose queue is full raises `QueueFull` at once, and the caller
answers the User.
"""

from __future__ import annotations

from typing import Literal, Protocol

from gateway.core.device import DeviceCommand, DeviceReply, Priority
from mmc.identifiers import Eui64


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
