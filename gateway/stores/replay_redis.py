"""Replay counters, CV 4 allowances and their Pre-Commands on the shared Redis.

The `ReplayStore` of `[state] backend = "redis"`: every node decides on the same keys,
so a counter accepted by one is refused by all, and a CV 5/6/7 finds its CV 4's
allowance and Pre-Command on whichever node it reaches.

**Keys** (per originator, one hash tag, so one Cluster slot): `replay:{EUI}:last` the
last accepted counter; `replay:{EUI}:open` a sorted set of the open allowances;
`replay:{EUI}:pc` a hash counter -> the issued Pre-Command ("n" until dispatch records
one, "g" + GBCS after); `replay:{EUI}:resets` the operators' resets, newest first.
Counters are written as 20-digit zero-padded decimals: Lua numbers are doubles (exact
only to 2**53, and nanosecond counters exceed it), padded strings compare in counter
order, and all allowances have score 0, so ZPOPMIN drops the smallest (oldest) counter.

**One script, batched.** `_ADMIT_LUA` is `gateway.core.replay_rules.decide` over those
keys for a list of requests, in order, atomically. Requests waiting at the same moment
share one EVALSHA (gateway/stores/redis_batch.py); under Cluster the batch is split by
slot and the calls are sent together. The verdict is returned only once `durable`
confirms the script's writes (appendfsync always, or WAIT).

Against the SQLite guard this keeps no in-memory floor: every CV 1-4 asks Redis.
"""

from __future__ import annotations

import binascii
import datetime as dt
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any, Final

import msgspec
import trio

from gateway.core import replay_rules
from gateway.core.replay_rules import (
    DEFAULT_MAX_COUNTER,
    Admission,
    ReplayVerdict,
    check_counter,
)
from gateway.stores.group_commit import running
from gateway.stores.redis_batch import RoundTripBatcher
from gateway.stores.redis_shared import REDIS_ERRORS, SharedRedis, SharedStoreUnavailable
from gateway.stores.replay_sqlite import (
    MAX_AUDIT_TEXT_CHARS,
    MAX_RESETS_SHOWN,
    CounterReset,
    CounterStatus,
    ReplayStoreError,
)
from gateway.stores.times import from_us, to_us
from mmc.identifiers import Eui64, RequestId

MAX_BATCH_ADMISSIONS: Final = 512  # requests per script call (bounds the script's run)
MAX_QUEUED_ADMISSIONS: Final = 4_096  # waiting for the next round trip; callers wait beyond
CLUSTER_SLOTS: Final = 16_384
_COUNTER_DIGITS: Final = 20  # 2**64 - 1 has 20 digits

# KEYS: per request last, open, pc. ARGV[1]: the allowance cap; then per request the
# padded counter and the command variant. Returns per request a verdict letter and the
# Pre-Command value ("" if none): F fresh, R replayed, N no pre-command.
_ADMIT_LUA: Final = """
local cap = tonumber(ARGV[1])
local out = {}
for i = 1, #KEYS / 3 do
  local last_key, open_key, pc_key = KEYS[3 * i - 2], KEYS[3 * i - 1], KEYS[3 * i]
  local counter, cv = ARGV[2 * i], ARGV[2 * i + 1]
  local verdict, pre = 'F', ''
  if cv == '5' or cv == '6' or cv == '7' then
    local found = redis.call('HGET', pc_key, counter)
    if found then
      redis.call('HDEL', pc_key, counter)
      redis.call('ZREM', open_key, counter)
      pre = found
    else
      local last = redis.call('GET', last_key)
      if last and counter <= last then verdict = 'R' else verdict = 'N' end
    end
  else
    local last = redis.call('GET', last_key)
    if last and counter <= last then
      verdict = 'R'
    else
      redis.call('SET', last_key, counter)
      if cv == '4' then
        redis.call('HSET', pc_key, counter, 'n')
        redis.call('ZADD', open_key, 0, counter)
        if redis.call('ZCARD', open_key) > cap then
          local oldest = redis.call('ZPOPMIN', open_key, 1)
          redis.call('HDEL', pc_key, oldest[1])
        end
      end
    end
  end
  out[2 * i - 1] = verdict
  out[2 * i] = pre
end
return out
"""
# KEYS: pc. ARGV: padded counter, "g" + GBCS. 1 if the allowance was open.
_RECORD_LUA: Final = """
if redis.call('HEXISTS', KEYS[1], ARGV[1]) == 0 then return 0 end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
return 1
"""
# KEYS: last, open, pc, resets. ARGV: padded new counter or "" (forget), the audit
# record's head (msgpack). The resets entry is "<old or ->|<dropped>|<head>", written in
# the script that changes the counter, so the audit says exactly what happened.
_RESET_LUA: Final = """
local old = redis.call('GET', KEYS[1]) or '-'
local dropped = 0
if ARGV[1] == '' then
  dropped = redis.call('ZCARD', KEYS[2])
  redis.call('DEL', KEYS[1], KEYS[2], KEYS[3])
else
  redis.call('SET', KEYS[1], ARGV[1])
end
redis.call('LPUSH', KEYS[4], old .. '|' .. dropped .. '|' .. ARGV[2])
return old .. '|' .. dropped
"""


class _ResetHead(msgspec.Struct, array_like=True, frozen=True):
    at_us: int
    operator: str
    peer: str
    reason: str
    new_counter: int | None


_HEAD_ENCODER: Final = msgspec.msgpack.Encoder()
_HEAD_DECODER: Final = msgspec.msgpack.Decoder(_ResetHead)
_VERDICTS: Final = {
    b"F": ReplayVerdict.FRESH,
    b"R": ReplayVerdict.REPLAYED,
    b"N": ReplayVerdict.NO_PRE_COMMAND,
}
_Request = tuple[RequestId, int]


def padded(counter: int) -> str:
    return f"{counter:0{_COUNTER_DIGITS}d}"


def key_slot(key: str) -> int:
    """The Redis Cluster slot of a key (CRC16/XMODEM of its hash tag, as Redis computes)."""
    data = key.encode()
    start = data.find(b"{")
    if start >= 0:
        end = data.find(b"}", start + 1)
        if end > start + 1:
            data = data[start + 1 : end]
    return binascii.crc_hqx(data, 0) % CLUSTER_SLOTS


class RedisReplayStore:
    """The ReplayStore on the shared Redis (gateway/stores/replay.py: the protocol)."""

    def __init__(self, shared: SharedRedis, *, max_counter: int = DEFAULT_MAX_COUNTER) -> None:
        self._shared = shared
        self._client: Any = shared.client
        self._max_counter = check_counter(max_counter)
        self._admit_script = self._client.register_script(_ADMIT_LUA)
        self._record_script = self._client.register_script(_RECORD_LUA)
        self._reset_script = self._client.register_script(_RESET_LUA)
        self._batcher: RoundTripBatcher[_Request, Admission] = RoundTripBatcher(
            self._admit_batch,
            max_batch=MAX_BATCH_ADMISSIONS,
            queue_size=MAX_QUEUED_ADMISSIONS,
            closed_error=lambda: trio.ClosedResourceError("the replay store is closed"),
        )

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        await self._batcher.run(task_status=task_status)

    @property
    def round_trips(self) -> int:
        return self._batcher.round_trips

    @property
    def waiting(self) -> int:
        """Admissions queued or in the round trip running now (a gauge)."""
        return self._batcher.queued + self._batcher.in_flight

    async def admit(self, request_id: RequestId, command_variant: int) -> Admission:
        """The verdict for one request, once Redis has it durably; ReplayStoreError if
        Redis failed (nothing was decided for the caller to rely on)."""
        if request_id.counter > self._max_counter:
            await trio.lowlevel.checkpoint()
            return Admission(ReplayVerdict.ABOVE_CEILING)
        return await self._batcher.submit((request_id, command_variant))

    async def record_pre_command(self, request_id: RequestId, gbcs: bytes) -> bool:
        keys = [self._key(request_id.originator, "pc")]
        args = [padded(request_id.counter), b"g" + gbcs]
        found = await self._durable(self._record_script(keys=keys, args=args))
        return bool(found)

    async def status(self, originator: Eui64) -> CounterStatus:
        try:
            last = await self._client.get(self._key(originator, "last"))
            open_count = await self._client.zcard(self._key(originator, "open"))
            entries = await self._client.lrange(
                self._key(originator, "resets"), 0, MAX_RESETS_SHOWN - 1
            )
        except REDIS_ERRORS as exc:
            raise ReplayStoreError(f"replay store on Redis: {exc}") from exc
        return CounterStatus(
            originator=originator,
            last_counter=None if last is None else int(last),
            open_pre_commands=int(open_count),
            resets=tuple(_reset_record(originator, bytes(e)) for e in entries),
        )

    async def reset_counter(
        self,
        originator: Eui64,
        to: int | None,
        *,
        at: dt.datetime,
        operator: str,
        peer: str,
        reason: str = "",
    ) -> CounterReset:
        """Set the last counter to `to` (None: forget it and its open allowances), and
        record who, when, old and new in the same script."""
        if to is not None:
            check_counter(to)
        head = _ResetHead(
            to_us(at), operator[:MAX_AUDIT_TEXT_CHARS], peer, reason[:MAX_AUDIT_TEXT_CHARS], to
        )
        keys = [self._key(originator, kind) for kind in ("last", "open", "pc", "resets")]
        args = ["" if to is None else padded(to), _HEAD_ENCODER.encode(head)]
        outcome = await self._durable(self._reset_script(keys=keys, args=args))
        old, dropped = bytes(outcome).split(b"|")
        return _reset_from(originator, head, old, int(dropped))

    def _key(self, originator: str, kind: str) -> str:
        return self._shared.keys.of("replay", originator, kind)

    async def _durable(self, write: Any) -> Any:
        try:
            return await self._shared.durable(write)
        except SharedStoreUnavailable as exc:
            raise ReplayStoreError(f"replay store on Redis: {exc}") from exc

    async def _admit_batch(self, batch: Sequence[_Request]) -> list[Admission]:
        if not self._shared.cluster:
            return await self._admit_group(batch)
        # A script's keys must share a slot: one call per slot, sent together.
        groups: dict[int, list[int]] = {}
        for index, (request_id, _) in enumerate(batch):
            slot = key_slot(self._key(request_id.originator, "last"))
            groups.setdefault(slot, []).append(index)
        results: list[Admission | None] = [None] * len(batch)
        failures: list[ReplayStoreError] = []

        async def one(indices: list[int]) -> None:
            try:
                verdicts = await self._admit_group([batch[i] for i in indices])
            except ReplayStoreError as exc:  # the others' verdicts still stand
                failures.append(exc)
                return
            for i, admission in zip(indices, verdicts, strict=True):
                results[i] = admission

        async with trio.open_nursery() as nursery:
            for indices in groups.values():
                nursery.start_soon(one, indices)
        if failures:
            # The batcher fails the whole batch: a slot that answered may have spent its
            # counters (safe: refused later, never accepted twice), none is acknowledged.
            raise failures[0]
        return [r for r in results if r is not None]

    async def _admit_group(self, batch: Sequence[_Request]) -> list[Admission]:
        keys: list[str] = []
        args: list[str | int] = [replay_rules.MAX_OPEN_PRE_COMMANDS_PER_ORIGINATOR]
        for request_id, command_variant in batch:
            originator = request_id.originator
            keys += [self._key(originator, k) for k in ("last", "open", "pc")]
            args += [padded(request_id.counter), str(command_variant)]
        flat = await self._durable(self._admit_script(keys=keys, args=args))
        return [_admission(flat[2 * i], flat[2 * i + 1]) for i in range(len(batch))]


def _admission(verdict: bytes, pre: bytes) -> Admission:
    kind = _VERDICTS[bytes(verdict)]
    if kind is not ReplayVerdict.FRESH or not pre:
        return Admission(kind)
    pre = bytes(pre)
    return Admission(kind, pre[1:] if pre.startswith(b"g") else None)


def _reset_from(originator: Eui64, head: _ResetHead, old: bytes, dropped: int) -> CounterReset:
    return CounterReset(
        originator=originator,
        at=from_us(head.at_us),
        operator=head.operator,
        peer=head.peer,
        reason=head.reason,
        old_counter=None if old == b"-" else int(old),
        new_counter=head.new_counter,
        open_pre_commands_dropped=dropped,
    )


def _reset_record(originator: Eui64, entry: bytes) -> CounterReset:
    old, dropped, head = entry.split(b"|", 2)
    return _reset_from(originator, _HEAD_DECODER.decode(head), old, int(dropped))


@asynccontextmanager
async def open_redis_replay_store(
    shared: SharedRedis, *, max_counter: int = DEFAULT_MAX_COUNTER
) -> AsyncIterator[RedisReplayStore]:
    """A running store (its batcher in a child nursery) for the duration of the block."""
    store = RedisReplayStore(shared, max_counter=max_counter)
    async with running(store):
        yield store
