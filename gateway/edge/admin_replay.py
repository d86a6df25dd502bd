"""Admin routes for replay counters: show an originator's last counter, reset it (audited).

    GET  /admin/replay/USER_ID          last counter, open Pre-Commands, recent resets
    POST /admin/replay/USER_ID/reset    {"operator": "...", "to": N, "reason": "..."}

A reset is how an operator recovers a User locked out by a counter nothing can
exceed. `to` absent or null forgets the counter (and the originator's open
Pre-Commands): any counter is fresh next. With `to`, the next counter must be
above it. Who (as the operator names themself, and the admin client's address),
when, the old and the new counter are written to the replay file's audit table
in the same transaction as the change (gateway/stores/replay_sqlite.py).
"""

from __future__ import annotations

import logging
from typing import Annotated

import msgspec

from gateway.core.clock import Clock
from gateway.core.log_fields import log_event
from gateway.core.replay_rules import check_counter
from gateway.stores.replay import ReplayStore
from mmc.identifiers import IdentifierError, parse_eui64

log = logging.getLogger("duisgw.admin")

JSON = b"application/json"
Answer = tuple[int, bytes, bytes]


class ResetRequest(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    operator: Annotated[str, msgspec.Meta(min_length=1, max_length=64)]
    to: Annotated[int, msgspec.Meta(ge=0)] | None = None
    reason: Annotated[str, msgspec.Meta(max_length=200)] = ""

    def __post_init__(self) -> None:
        if self.to is not None:
            check_counter(self.to)  # a uint64 (msgspec's bounds stop at int64)


_RESET_DECODER = msgspec.json.Decoder(ResetRequest)


def _json(status: int, value: object) -> Answer:
    return status, msgspec.json.encode(value), JSON


class ReplayAdmin:
    def __init__(self, replay: ReplayStore, clock: Clock) -> None:
        self._replay = replay
        self._clock = clock

    async def route(
        self, method: str, rest: list[str], body: bytes, media_type: bytes, peer: str
    ) -> Answer:
        """`rest`: the path after /admin/replay; `media_type`: the body's, lower-cased."""
        if not rest or len(rest) > 2 or rest[1:] not in ([], ["reset"]):
            return _json(404, {"error": "unknown replay path"})
        try:
            originator = parse_eui64(rest[0])
        except IdentifierError as exc:
            return _json(400, {"error": f"User ID: {exc}"})
        if len(rest) == 1:
            if method != "GET":
                return _json(405, {"error": "GET only"})
            return _json(200, await self._replay.status(originator))
        if method != "POST":
            return _json(405, {"error": "POST only"})
        if media_type != JSON:
            return _json(415, {"error": "Content-Type must be application/json"})
        try:
            wanted = _RESET_DECODER.decode(body)
        except msgspec.DecodeError as exc:  # ValidationError included: names the field
            return _json(400, {"error": f"reset body: {exc}"})
        record = await self._replay.reset_counter(
            originator,
            wanted.to,
            at=self._clock.now(),
            operator=wanted.operator,
            peer=peer,
            reason=wanted.reason,
        )
        log_event(
            log,
            logging.WARNING,
            "replay counter reset",
            "replay counter of %(user_id)s reset from %(old_counter)s to %(new_counter)s by "
            "%(operator)r from %(peer)s (reason: %(reason)r)",
            user_id=originator,
            old_counter=record.old_counter,
            new_counter=record.new_counter,
            operator=record.operator,
            peer=peer,
            reason=record.reason,
        )
        return _json(200, {"reset": record})
