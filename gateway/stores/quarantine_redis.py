"""Quarantine on the shared Redis: held on one node, listed and released from any.

The `QuarantineStore` of `[state] backend = "redis"` (gateway/stores/quarantine.py: the
protocol and the SQLite store it mirrors). Every key carries one hash tag, `{q}`, so a
Redis Cluster keeps the whole quarantine on one slot and each script below is atomic
over it (held requests are the exception, not the traffic: one slot is enough).

Keys: `seq` (INCR: event refs unique across nodes, never reused); `item` a hash
ref -> the request as held (msgpack, immutable); `raw` ref -> its bytes (dropped on
delete); `state` ref -> "held" | "releasing:<owner>" | "released:<µs>" | "deleted:<µs>";
`in:<state>` a sorted set of refs (score = ref) per state, for listing and counting;
`finished` refs by finishing time, for the purge; `audit:<ref>` the decisions.

Release and delete are one script each (`_TRANSITION_LUA`): it changes the state only
from "held", writes the decision in the same call and returns the prior state
otherwise, so of two operators on two nodes exactly one wins and the other hears why.
Each write returns after `durable` (appendfsync always, or WAIT).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any, Final

import msgspec
from coredis.tokens import PureToken

from gateway.core.clock import Clock
from gateway.stores.quarantine import (
    MAX_LIST_ROWS,
    NotHeld,
    QuarantinedRequest,
    QuarantineEventRef,
    QuarantineItem,
    QuarantineState,
    QuarantineStoreError,
    UnknownEventRef,
)
from gateway.stores.quarantine_audit import AuditAction, AuditEntry, Decision
from gateway.stores.redis_shared import REDIS_ERRORS, SharedRedis, SharedStoreUnavailable
from gateway.stores.times import from_us, to_us
from thresholds.config import Breach

TAG: Final = "q"
STATES: Final[tuple[QuarantineState, ...]] = ("held", "releasing", "released", "deleted")
SCAN_PAGE: Final = 500  # refs fetched per round trip while filtering a listing

# KEYS: seq, item, raw, state, in:held. ARGV: the held item (msgpack), the bytes.
# Returns the new ref: one call, so a request is held whole or not at all.
_HOLD_LUA: Final = """
local ref = redis.call('INCR', KEYS[1])
redis.call('HSET', KEYS[2], ref, ARGV[1])
redis.call('HSET', KEYS[3], ref, ARGV[2])
redis.call('HSET', KEYS[4], ref, 'held')
redis.call('ZADD', KEYS[5], ref, ref)
return ref
"""
# KEYS: state, raw, in:held, in:<target>, finished, audit. ARGV: ref, new state value,
# drop raw ("1"/"0"), finished µs ("" if not finished), audit entry ("" for none).
# Returns {"ok", raw} or {"no", prior state or ""}.
_TRANSITION_LUA: Final = """
local ref = ARGV[1]
local prior = redis.call('HGET', KEYS[1], ref)
if prior ~= 'held' then return {'no', prior or ''} end
redis.call('HSET', KEYS[1], ref, ARGV[2])
redis.call('ZREM', KEYS[3], ref)
redis.call('ZADD', KEYS[4], ref, ref)
if ARGV[4] ~= '' then redis.call('ZADD', KEYS[5], ARGV[4], ref) end
local raw = redis.call('HGET', KEYS[2], ref) or ''
if ARGV[3] == '1' then redis.call('HDEL', KEYS[2], ref) end
if ARGV[5] ~= '' then redis.call('RPUSH', KEYS[6], ARGV[5]) end
return {'ok', raw}
"""
# KEYS: state, in:releasing, in:released, finished. ARGV: ref, finished µs.
_FINISH_LUA: Final = """
local prior = redis.call('HGET', KEYS[1], ARGV[1])
if not prior or string.sub(prior, 1, 10) ~= 'releasing:' then return 0 end
redis.call('HSET', KEYS[1], ARGV[1], 'released:' .. ARGV[2])
redis.call('ZREM', KEYS[2], ARGV[1])
redis.call('ZADD', KEYS[3], ARGV[1], ARGV[1])
redis.call('ZADD', KEYS[4], ARGV[2], ARGV[1])
return 1
"""
# KEYS: state, item, raw, finished, in:held, in:releasing, in:released, in:deleted, then
# the audit list of each ref. ARGV: refs; ARGV[#] = "held" to remove only refs still
# held, "any" otherwise. Returns the refs removed.
_REMOVE_LUA: Final = """
local only_held = ARGV[#ARGV] == 'held'
local removed = {}
for i = 1, #ARGV - 1 do
  local ref = ARGV[i]
  local st = redis.call('HGET', KEYS[1], ref)
  if st and (not only_held or st == 'held') then
    redis.call('HDEL', KEYS[1], ref)
    redis.call('HDEL', KEYS[2], ref)
    redis.call('HDEL', KEYS[3], ref)
    redis.call('ZREM', KEYS[4], ref)
    for k = 5, 8 do redis.call('ZREM', KEYS[k], ref) end
    redis.call('DEL', KEYS[8 + i])
    removed[#removed + 1] = ref
  end
end
return removed
"""


class _Held(msgspec.Struct, array_like=True, frozen=True):
    """What `item` keeps of a request: everything but its state and bytes."""

    user_id: str
    request_id: str
    srv: str
    duis_version: str
    breach: Breach
    held_at_us: int


class _Audit(msgspec.Struct, array_like=True, frozen=True):
    at_us: int
    action: AuditAction
    by: str
    reason: str


_HELD_ENCODER: Final = msgspec.msgpack.Encoder()
_HELD_DECODER: Final = msgspec.msgpack.Decoder(_Held)
_AUDIT_DECODER: Final = msgspec.msgpack.Decoder(_Audit)


class RedisQuarantineStore:
    def __init__(self, shared: SharedRedis, clock: Clock) -> None:
        self._shared = shared
        self._client: Any = shared.client
        self._clock = clock
        self._hold = self._client.register_script(_HOLD_LUA)
        self._transition = self._client.register_script(_TRANSITION_LUA)
        self._finish = self._client.register_script(_FINISH_LUA)
        self._remove = self._client.register_script(_REMOVE_LUA)
        self.transactions = 0  # writes confirmed (the SQLite store counts its batches)

    @property
    def queue_depth(self) -> int:
        return 0  # no local queue: each call is its own round trip

    def _key(self, *rest: str | int) -> str:
        return self._shared.keys.of("quarantine", TAG, *rest)

    async def hold(self, item: QuarantineItem) -> QuarantineEventRef:
        """Store a held request; returns once Redis has it durably."""
        held = _Held(
            item.user_id,
            item.request_id,
            item.srv,
            item.duis_version,
            item.breach,
            to_us(item.held_at),
        )
        keys = [self._key(k) for k in ("seq", "item", "raw", "state")]
        keys.append(self._key("in", "held"))
        args = [_HELD_ENCODER.encode(held), item.raw_request]
        return QuarantineEventRef(int(await self._durable(self._hold(keys=keys, args=args))))

    async def list_requests(
        self,
        *,
        user_id: str | None = None,
        srv: str | None = None,
        min_age_seconds: float = 0.0,
        state: QuarantineState = "held",
        after_ref: int = 0,
        limit: int = MAX_LIST_ROWS,
    ) -> list[QuarantinedRequest]:
        """Requests in `state`, oldest ref first, held at least `min_age_seconds` ago."""
        limit = max(0, min(limit, MAX_LIST_ROWS))
        newest_us = to_us(self._clock.now()) - round(min_age_seconds * 1e6)
        found: list[QuarantinedRequest] = []
        cursor = after_ref
        while len(found) < limit:
            refs = await self._read(
                self._client.zrange(
                    self._key("in", state),
                    cursor + 1,
                    "+inf",
                    sortby=PureToken.BYSCORE,
                    offset=0,
                    count=SCAN_PAGE,
                )
            )
            if not refs:
                break
            cursor = int(refs[-1])
            for record in await self._records([int(r) for r in refs]):
                if record is None or record.state != state:
                    continue
                if (user_id is not None and record.user_id != user_id) or (
                    srv is not None and record.srv != srv
                ):
                    continue
                if min_age_seconds > 0 and to_us(record.held_at) > newest_us:
                    continue
                found.append(record)
        return found[:limit]

    async def show(self, ref: int) -> QuarantinedRequest | None:
        [record] = await self._records([ref])
        return record

    async def begin_release(
        self, ref: int, owner: int, decision: Decision | None = None
    ) -> QuarantinedRequest:
        """`releasing` for `owner`, exactly once across every node; NotHeld otherwise."""
        return await self._move(ref, "releasing", f"releasing:{owner}", decision, "release")

    async def finish_release(self, ref: int) -> None:
        now_us = to_us(self._clock.now())
        keys = [
            self._key("state"),
            self._key("in", "releasing"),
            self._key("in", "released"),
            self._key("finished"),
        ]
        await self._durable(self._finish(keys=keys, args=[ref, now_us]))

    async def releasing(self, owner: int) -> list[QuarantinedRequest]:
        """Releases `owner` began and did not finish (it stopped in between)."""
        refs = await self._read(self._client.zrange(self._key("in", "releasing"), 0, -1))
        records = await self._records([int(r) for r in refs])
        return [r for r in records if r is not None and r.release_owner == owner]

    async def delete(self, ref: int, decision: Decision | None = None) -> QuarantinedRequest:
        """Deleted (never to be processed), its bytes dropped, exactly once; audited."""
        return await self._move(ref, "deleted", None, decision, "delete")

    async def expire(self, retention_seconds: float) -> list[QuarantinedRequest]:
        """Remove held requests older than the retention and return them to notify; purge
        finished ones older than it. At most MAX_LIST_ROWS held per call."""
        cutoff_us = to_us(self._clock.now()) - round(retention_seconds * 1e6)
        old = await self.list_requests(
            min_age_seconds=retention_seconds, state="held", limit=MAX_LIST_ROWS
        )
        removed = set(await self._remove_refs([r.event_ref for r in old], only_held=True))
        finished = await self._read(
            self._client.zrange(self._key("finished"), "-inf", cutoff_us, sortby=PureToken.BYSCORE)
        )
        await self._remove_refs([int(r) for r in finished], only_held=False)
        return [r for r in old if r.event_ref in removed]

    async def audit(self, ref: int) -> list[AuditEntry]:
        entries = await self._read(self._client.lrange(self._key("audit", ref), 0, -1))
        decoded = (_AUDIT_DECODER.decode(bytes(e)) for e in entries)
        return [
            AuditEntry(
                event_ref=ref, at=from_us(a.at_us), action=a.action, by=a.by, reason=a.reason
            )
            for a in decoded
        ]

    async def count(self, state: QuarantineState = "held") -> int:
        return int(await self._read(self._client.zcard(self._key("in", state))))

    async def _move(
        self,
        ref: int,
        target: QuarantineState,
        value: str | None,
        decision: Decision | None,
        action: AuditAction,
    ) -> QuarantinedRequest:
        now_us = to_us(self._clock.now())
        finished = target != "releasing"
        entry = b""
        if decision is not None:
            entry = _HELD_ENCODER.encode(_Audit(now_us, action, decision.by, decision.reason))
        keys = [
            self._key("state"),
            self._key("raw"),
            self._key("in", "held"),
            self._key("in", target),
            self._key("finished"),
            self._key("audit", ref),
        ]
        args = [
            ref,
            value or f"{target}:{now_us}",
            "1" if target == "deleted" else "0",
            now_us if finished else "",
            entry,
        ]
        outcome, detail = await self._durable(self._transition(keys=keys, args=args))
        if bytes(outcome) == b"no":
            prior = bytes(detail).decode().split(":", 1)[0]
            if not prior:
                raise UnknownEventRef(f"no quarantined request {ref}")
            if prior == "releasing":
                raise NotHeld(f"quarantined request {ref} is being released")
            raise NotHeld(f"quarantined request {ref} was already {prior}")
        [record] = await self._records([ref])
        if record is None:  # purged between the two calls: answer from what we know
            raise UnknownEventRef(f"no quarantined request {ref}")
        # The bytes as they were when it left "held" (a delete has dropped them since).
        return msgspec.structs.replace(record, raw_request=bytes(detail))

    async def _records(self, refs: Sequence[int]) -> list[QuarantinedRequest | None]:
        if not refs:
            return []
        fields = [str(r) for r in refs]
        items = await self._read(self._client.hmget(self._key("item"), fields))
        states = await self._read(self._client.hmget(self._key("state"), fields))
        raws = await self._read(self._client.hmget(self._key("raw"), fields))
        rows = zip(refs, items, states, raws, strict=True)
        return [_record(ref, item, st, raw) for ref, item, st, raw in rows]

    async def _remove_refs(self, refs: Sequence[int], *, only_held: bool) -> list[int]:
        if not refs:
            return []
        keys = [
            self._key("state"),
            self._key("item"),
            self._key("raw"),
            self._key("finished"),
            *(self._key("in", s) for s in STATES),
            *(self._key("audit", r) for r in refs),
        ]
        args = [*map(str, refs), "held" if only_held else "any"]
        removed = await self._durable(self._remove(keys=keys, args=args))
        return [int(r) for r in removed]

    async def _durable(self, write: Any) -> Any:
        try:
            result = await self._shared.durable(write)
        except SharedStoreUnavailable as exc:
            raise QuarantineStoreError(f"quarantine on Redis: {exc}") from exc
        self.transactions += 1
        return result

    async def _read(self, read: Any) -> Any:
        try:
            return await read
        except REDIS_ERRORS as exc:
            raise QuarantineStoreError(f"quarantine on Redis: {exc}") from exc


def _record(
    ref: int, item: bytes | None, state: bytes | None, raw: bytes | None
) -> QuarantinedRequest | None:
    if item is None or state is None:
        return None
    held = _HELD_DECODER.decode(bytes(item))
    name, _, detail = bytes(state).decode().partition(":")
    owner = int(detail) if name == "releasing" else None
    finished = from_us(int(detail)) if name in ("released", "deleted") else None
    return QuarantinedRequest(
        event_ref=QuarantineEventRef(ref),
        user_id=held.user_id,
        request_id=held.request_id,
        srv=held.srv,
        duis_version=held.duis_version,
        breach=held.breach,
        held_at=from_us(held.held_at_us),
        state=name,  # type: ignore[arg-type]  # written by this module: one of STATES
        finished_at=finished,
        raw_request=b"" if raw is None else bytes(raw),
        release_owner=owner,
    )


@asynccontextmanager
async def open_redis_quarantine_store(
    shared: SharedRedis, clock: Clock
) -> AsyncIterator[RedisQuarantineStore]:
    """No task of its own: every call is one round trip on the shared client."""
    yield RedisQuarantineStore(shared, clock)
