"""Pre-Commands issued for CV 4 requests, kept until the User's SignedPreCommand.

Keyed by the full RequestID (originator, target, counter): a SignedPreCommand
carries the same RequestID, so another User can never pick up a Pre-Command
that was issued to someone else. Bounded: the oldest entry goes first.
"""

from __future__ import annotations

from collections import OrderedDict

from mmc.identifiers import RequestId

MAX_PENDING_PRE_COMMANDS = 100_000


class PreCommandStore:
    def __init__(self, capacity: int = MAX_PENDING_PRE_COMMANDS) -> None:
        self._capacity = capacity
        self._pending: OrderedDict[RequestId, bytes] = OrderedDict()

    def put(self, request_id: RequestId, gbcs: bytes) -> None:
        self._pending[request_id] = gbcs
        self._pending.move_to_end(request_id)
        while len(self._pending) > self._capacity:
            self._pending.popitem(last=False)

    def take(self, request_id: RequestId) -> bytes | None:
        return self._pending.pop(request_id, None)

    def __len__(self) -> int:
        return len(self._pending)
