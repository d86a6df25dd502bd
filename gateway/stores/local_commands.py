"""Where the commands issued for local delivery wait for their response (SRV 8.13).

`LocalCommandStore` is what the gateway needs: three small operations, each atomic on
its own, so a Redis backend is a key per command (SET with an expiry, GET, GETDEL)
plus a sorted set per originator for the cap. The records are
`gateway.core.local_commands.IssuedLocalCommand`, encoded with msgspec; the rules that
read them stay in the core. The SQLite backend is `gateway.stores.local_commands_sqlite`
(one file in the state directory, shared by every worker, so the 8.13 may reach any
worker).

Bounded twice: a record expires `[local_delivery] command_ttl_seconds` after it was
issued (then it can no longer be answered), and an originator keeps at most
`max_open_commands_per_originator` open commands, the oldest dropped first (as open
Pre-Commands are).
"""

from __future__ import annotations

import datetime as dt
from typing import Final, Protocol

import msgspec

from gateway.core.local_commands import IssuedLocalCommand
from mmc.identifiers import RequestId

FILE_NAME: Final = "local_commands.sqlite"
DEFAULT_MAX_PER_ORIGINATOR: Final = 65_536  # `[local_delivery]` sets it


class LocalCommandStoreError(Exception):
    """We broke: the store failed or is not running (a 5xx, never the User's fault)."""


class LocalCommandStore(Protocol):
    async def put(self, command: IssuedLocalCommand) -> None:
        """Keep `command` (durable on return), replacing one with the same RequestID; drop
        expired records, and the originator's oldest beyond its cap."""
        ...

    async def get(self, request_id: RequestId, now: dt.datetime) -> IssuedLocalCommand | None:
        """The open command issued under `request_id`; None if none, or expired."""
        ...

    async def take(self, request_id: RequestId, now: dt.datetime) -> IssuedLocalCommand | None:
        """Remove and return the open command (None if another caller took it first)."""
        ...


_ENCODER: Final = msgspec.msgpack.Encoder()
_DECODER: Final = msgspec.msgpack.Decoder(IssuedLocalCommand)


def encode_command(command: IssuedLocalCommand) -> bytes:
    return _ENCODER.encode(command)


def decode_command(data: bytes) -> IssuedLocalCommand:
    return _DECODER.decode(data)
