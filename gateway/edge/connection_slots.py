"""Who may hold a connection slot: the global cap, the per-peer cap, idle reclamation.

Sans-IO: plain bookkeeping that gateway/edge/server.py consults when it accepts a
connection and tells when one goes idle, gets busy or ends. When every slot is
taken, the connection idle longest between requests is reclaimed (its owner
closes it) to make room, as a server must not let parked keep-alive sockets
lock out a client with work to do; only when no slot is idle is a newcomer
refused. One peer (by IP) never holds more than `max_per_peer` slots.
"""

from __future__ import annotations

import enum
from collections import Counter
from collections.abc import Callable


class Refusal(enum.StrEnum):
    """Why a connection got no slot (the `reason` label of connections refused)."""

    FULL = "max_connections"
    PER_PEER = "max_connections_per_peer"


class Slot:
    """One admitted connection. `reclaim` is called (once) when it must close to make room."""

    __slots__ = ("peer", "reclaim", "reclaimed")

    def __init__(self, peer: str, reclaim: Callable[[], None]) -> None:
        self.peer = peer
        self.reclaim = reclaim
        self.reclaimed = False


class ConnectionSlots:
    def __init__(self, max_connections: int, max_per_peer: int) -> None:
        self._max = max_connections
        self._max_per_peer = max_per_peer
        self._open: set[Slot] = set()
        self._per_peer: Counter[str] = Counter()
        # Idle slots in the order they became idle: the first is the longest idle.
        self._idle: dict[Slot, None] = {}

    @property
    def open_count(self) -> int:
        return len(self._open)

    @property
    def idle_count(self) -> int:
        return len(self._idle)

    def peer_count(self, peer: str) -> int:
        return self._per_peer[peer]

    def admit(self, peer: str, reclaim: Callable[[], None]) -> Slot | Refusal:
        """A slot for a new connection from `peer`, reclaiming an idle one if all are taken."""
        if self._per_peer[peer] >= self._max_per_peer:
            return Refusal.PER_PEER
        if len(self._open) >= self._max:
            if not self._idle:
                return Refusal.FULL
            victim = next(iter(self._idle))
            self.release(victim)
            victim.reclaimed = True
            victim.reclaim()
        slot = Slot(peer, reclaim)
        self._open.add(slot)
        self._per_peer[peer] += 1
        return slot

    def idle(self, slot: Slot) -> None:
        """The connection waits between requests: it may be reclaimed."""
        if slot in self._open:
            self._idle.pop(slot, None)
            self._idle[slot] = None

    def busy(self, slot: Slot) -> None:
        """A request has begun arriving (or is being answered): never reclaimed now."""
        self._idle.pop(slot, None)

    def release(self, slot: Slot) -> None:
        """The connection is gone (idempotent: a reclaimed slot was released already)."""
        if slot not in self._open:
            return
        self._open.discard(slot)
        self._idle.pop(slot, None)
        self._per_peer[slot.peer] -= 1
        if not self._per_peer[slot.peer]:
            del self._per_peer[slot.peer]
