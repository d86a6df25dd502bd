"""The reloadable snapshot: trust, Users and inventory as one immutable value.

Start-up builds one; a reload (SIGHUP, POST /admin/reload) builds a complete new
one from the operator's files and swaps it in whole, so a request that takes
`holder.current` once sees the old set or the new one, never a mixture. Nothing
else the gateway holds changes on reload. Which files, and how a reload is
reported, is the composition root's (gateway/compose.py); this is the value.
"""

from __future__ import annotations

from dataclasses import dataclass

import msgspec

from gateway.core.certstore import CertStore
from gateway.core.registry import Inventory, UserRegistry


@dataclass(frozen=True, slots=True)
class Snapshot:
    certstore: CertStore
    users: UserRegistry
    inventory: Inventory


class SnapshotHolder:
    """The one place a snapshot is swapped; everyone else reads `current`."""

    __slots__ = ("_current",)

    def __init__(self, first: Snapshot) -> None:
        self._current = first

    @property
    def current(self) -> Snapshot:
        return self._current

    def swap(self, snapshot: Snapshot) -> None:
        self._current = snapshot


class Reloaded(msgspec.Struct, frozen=True):
    users: int
    devices: int
    certificates_skipped: int

    @property
    def message(self) -> str:
        return (
            f"reloaded: {self.users} users, {self.devices} devices, "
            f"{self.certificates_skipped} certificate files skipped"
        )


class ReloadFailed(msgspec.Struct, frozen=True):
    """The operator's files did not load: the previous snapshot stays in force."""

    reason: str

    @property
    def message(self) -> str:
        return f"reload failed: {self.reason}"


ReloadResult = Reloaded | ReloadFailed
