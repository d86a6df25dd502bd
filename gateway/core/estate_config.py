"""The `[estate]` table: which device transport the gateway uses, and the estate link's
settings on both ends (gateway/edge/estate_link.py connects, `duisgw estate serve`
listens). Values only; docs/estate-link.md says what each one does on the wire.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Final, Literal

import msgspec

Seconds = Annotated[float, msgspec.Meta(gt=0.0, le=86_400.0)]
Address = Annotated[str, msgspec.Meta(pattern=r"^\S+:[0-9]{1,5}$")]

ESTATE_PORT: Final = 7379
# Commands one connection may have in flight at the estate: enough to fill many hubs'
# priority queues, small enough that a node's backlog stays in its durable journal.
CREDIT_WINDOW: Final = 1024
MAX_FRAME_BYTES: Final = 1024 * 1024


class EstateTls(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """TLS on the estate link. Gateway side: `ca` verifies the estate, `certificate` and
    `private_key` (optional) identify the node. Estate side: `certificate` and
    `private_key` identify the estate, `ca` (optional) verifies the nodes' certificates."""

    ca: str | None = None
    certificate: str | None = None
    private_key: str | None = None
    server_name: str | None = None  # gateway side: the name the estate's certificate carries


class EstateConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    # "embedded": the simulator in the gateway's process; "network": an estate service.
    transport: Literal["embedded", "network"] = "embedded"
    address: Address = f"127.0.0.1:{ESTATE_PORT}"
    # Names this gateway node to the estate, which sends a command's reply to the node
    # that sent it. Default: the host name (plus the worker index under --workers).
    node_id: Annotated[str, msgspec.Meta(max_length=200)] = ""
    connect_timeout_seconds: Seconds = 5.0
    # No reply this long after a command went out: the User gets E21 (E30 when future-
    # dated, counted from its execution time). Above the estate's own queue and device
    # timeouts, so it answers first when it can.
    command_timeout_seconds: Seconds = 900.0
    reconnect_initial_seconds: Seconds = 0.5
    reconnect_max_seconds: Seconds = 30.0
    # Each side sends a Heartbeat this often, and closes a link silent for three of them.
    heartbeat_seconds: Seconds = 5.0
    max_frame_bytes: Annotated[int, msgspec.Meta(ge=1024, le=64 * 1024 * 1024)] = MAX_FRAME_BYTES
    # A file holding a shared secret the node presents in Hello and the estate requires.
    auth_token_file: str | None = None
    tls: EstateTls | None = None
    # Estate side (`duisgw estate serve`).
    credit_window: Annotated[int, msgspec.Meta(ge=1, le=1_000_000)] = CREDIT_WINDOW
    # A reply whose node is gone waits this long for it to reconnect, then goes to any
    # live node (the job is in the shared store).
    orphan_grace_seconds: Annotated[float, msgspec.Meta(ge=0.0, le=86_400.0)] = 10.0


def resolve_estate_paths(estate: EstateConfig, rel: Callable[[str], str]) -> EstateConfig:
    def opt(path: str | None) -> str | None:
        return None if path is None else rel(path)

    tls = estate.tls
    if tls is not None:
        tls = msgspec.structs.replace(
            tls, ca=opt(tls.ca), certificate=opt(tls.certificate), private_key=opt(tls.private_key)
        )
    return msgspec.structs.replace(estate, auth_token_file=opt(estate.auth_token_file), tls=tls)
