"""The estate link's message kinds: frozen, tagged msgspec Structs (docs/estate-link.md).

Each body is a MessagePack map whose "kind" field names the Struct. Unknown fields are
refused (`forbid_unknown_fields`), so a peer speaking a newer minor revision fails loudly
rather than being half understood; the version is agreed in `Hello`.
"""

from __future__ import annotations

import datetime as dt
import enum
from typing import Annotated

import msgspec

from gateway.core.device import DeviceCommand, DeviceOutcome, DeviceReply, Priority
from mmc.identifiers import parse_request_id

PROTOCOL_VERSION = 1

_Text = Annotated[str, msgspec.Meta(max_length=256)]
_Eui64 = Annotated[str, msgspec.Meta(max_length=32)]
_CommandId = Annotated[str, msgspec.Meta(min_length=1, max_length=128)]
_Seconds = Annotated[float, msgspec.Meta(gt=0.0, le=86_400.0)]


class _Message(
    msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True, tag_field="kind"
):
    pass


class Hello(_Message, frozen=True, kw_only=True, tag="hello"):
    """First frame each way: who is speaking and which protocol version it speaks.
    `auth_token` is the gateway's shared secret when the estate asks for one."""

    node_id: _Text
    protocol_version: Annotated[int, msgspec.Meta(ge=1, le=65_535)]
    auth_token: _Text | None = None


class Command(_Message, frozen=True, kw_only=True, tag="command"):
    """One GBCS command for a device. `command_id` is the DUIS RequestID: unique across
    nodes, so a reply delivered to another node still names its job in the shared store."""

    command_id: _CommandId
    node_id: _Text
    priority: Priority
    srv_variant: _Text
    device_id: _Eui64
    device_type: _Text
    hub_id: _Eui64 | None = None
    gbcs: Annotated[bytes, msgspec.Meta(max_length=4 * 1024 * 1024)]
    # Seconds from receipt after which the gateway stops waiting (it answers E21 itself).
    timeout_seconds: _Seconds
    # Future-dated execution (DUIS ExecutionDateTime), UTC; None: now.
    not_before: dt.datetime | None = None


class Reply(_Message, frozen=True, kw_only=True, tag="reply"):
    """The device's answer, or why there is none; exactly one per Command."""

    command_id: _CommandId
    outcome: DeviceOutcome
    gbcs: bytes | None = None
    alerts: tuple[bytes, ...] = ()  # device alerts raised alongside the response
    # Seconds the command waited in the estate for its hub; null when not known.
    queued_seconds: Annotated[float, msgspec.Meta(ge=0.0)] | None = None


class Alert(_Message, frozen=True, kw_only=True, tag="alert"):
    """A device alert not tied to a command (GBCS alert bytes, addressed to a User)."""

    device_id: _Eui64
    gbcs: bytes


class Credit(_Message, frozen=True, kw_only=True, tag="credit"):
    """The estate takes `n` more commands on this connection (additive)."""

    n: Annotated[int, msgspec.Meta(ge=1, le=1_000_000)]


class Heartbeat(_Message, frozen=True, kw_only=True, tag="heartbeat"):
    pass


class ErrorCode(enum.StrEnum):
    MALFORMED = "malformed"  # a frame or body that does not decode
    OVERSIZE = "oversize"  # a length above the receiver's maximum
    PROTOCOL = "protocol"  # a valid message at the wrong time (no Hello, no credit)
    VERSION = "version"  # no common protocol version
    UNAUTHORISED = "unauthorised"  # missing or wrong auth_token


class Error(_Message, frozen=True, kw_only=True, tag="error"):
    """Sent just before the sender closes the connection."""

    code: ErrorCode
    reason: Annotated[str, msgspec.Meta(max_length=1024)]


Message = Hello | Command | Reply | Alert | Credit | Heartbeat | Error


def command_from_device(command: DeviceCommand, *, node_id: str, timeout_seconds: float) -> Command:
    return Command(
        command_id=str(command.request_id),
        node_id=node_id,
        priority=command.priority,
        srv_variant=command.srv_variant,
        device_id=command.device_id,
        device_type=command.device_type,
        hub_id=command.hub_id,
        gbcs=command.gbcs,
        timeout_seconds=timeout_seconds,
        not_before=_utc(command.not_before),
    )


def _utc(when: dt.datetime | None) -> dt.datetime | None:
    # DUIS date-times without an offset are UTC; on the wire every time carries it.
    if when is not None and when.tzinfo is None:
        return when.replace(tzinfo=dt.UTC)
    return when


def device_command(message: Command) -> DeviceCommand:
    """The DeviceCommand the estate's devices act on; IdentifierError (a ValueError)
    when `command_id` is not a RequestID."""
    return DeviceCommand(
        request_id=parse_request_id(message.command_id),
        srv_variant=message.srv_variant,
        device_id=message.device_id,
        device_type=message.device_type,
        hub_id=message.hub_id,
        gbcs=message.gbcs,
        priority=message.priority,
        not_before=message.not_before,
    )


def reply_from_device(command_id: str, reply: DeviceReply) -> Reply:
    return Reply(
        command_id=command_id,
        outcome=reply.outcome,
        gbcs=reply.gbcs,
        alerts=reply.alerts,
        queued_seconds=reply.queued_seconds,
    )


def device_reply(message: Reply) -> DeviceReply:
    return DeviceReply(message.outcome, message.gbcs, message.alerts, message.queued_seconds)
