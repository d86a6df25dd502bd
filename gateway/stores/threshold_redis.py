"""Threshold counts shared by several gateway processes through Redis.

Each process decides locally, on a *view* of every counter it uses: what it
last read back from Redis plus its own requests since. Its own counts go to
Redis in batches: one Lua script call per flush adds every pending bucket
delta and reads back every counter touched since the previous flush (one
round trip, atomic). A flush happens every `batch_size` requests, at least
every `flush_interval_seconds` (`run`), and before a decision on a *cold*
counter: one never read (a new User ID, a restarted process) or idle longer
than `view_horizon_seconds`.

Hot-path contract for the pipeline: call `check_and_count_nowait(...)` inline
(no await, a few µs); when it returns None, `await check_and_count(...)` with
the same arguments (one Redis round trip, shared by every task waiting then).

**Overshoot bound.** With P processes sharing the keys, the requests allowed
in any window of a rule with limit L is at most

    L + (P - 1) * batch_size

Why: a process never admits a request while `batch_size` of its own are not
yet in a read it has completed (the sync path returns None instead). Take the
process r whose last read of the counter came last, at time R. Everything it
admitted after R was checked against Redis(R) plus its own unread, so
Redis(R) + r's later requests <= L. Every other process read before R, so
what it has admitted that Redis(R) lacks is its unread, at most `batch_size`.
There is no undershoot: a view never counts more than the truth, so a request
is held only if at least L are truly counted (up to bucket approximation).
Pick batch_size <= tolerated overshoot / (P - 1); batch_size = 1 is a round
trip per request. Released requests (`commit_release`) come on top: the User
asked for them.

Counters are bucketed (windows.BucketWindow, `bucket_count` buckets per
window, conservative by at most one bucket): one Redis hash per counter, a
field per absolute bucket index plus the running total. A read returns the
total and the oldest k buckets (k covers `view_horizon_seconds`), enough to
slide the view exactly until the next read; the rest of the total is put in
the newest bucket (it can only expire later than it truly does). `now_seconds`
must be wall-clock epoch seconds here (processes must agree on bucket
indices; clock skew between them shifts their windows by the skew). Keys carry
the User ID in a hash tag, so a Redis Cluster would keep a User ID's counters
on one slot (one script call per flush still assumes a single Redis).

Failure: if Redis cannot be reached the flush raises ThresholdStoreUnavailable
and keeps its deltas to push again; the gateway chooses fail-open or -closed.
A flush that timed out after Redis applied it may be pushed twice: that
overcounts (holds early), it never undercounts.
"""

from __future__ import annotations

import logging
import math
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from typing import Any

import coredis
import coredis.exceptions
import msgspec
import trio

from thresholds.config import RedisStoreSettings, ThresholdConfig
from thresholds.crossings import CrossingLatch
from thresholds.engine import (
    ALLOW,
    NO_ATTRIBUTES,
    Action,
    AttributeValue,
    Decision,
    Plan,
    compile_plan,
    decide,
)
from thresholds.windows import BucketWindow

# Named, not __name__: the name operators filter on outlives a move of the module.
log = logging.getLogger("thresholds.redis")

# One hash per counter: field per absolute bucket index, plus "t" (total of the
# live buckets) and "lo" (oldest live index), kept so a read costs O(k), not
# O(buckets). KEYS: the hashes. ARGV[1]: msgpack, per key [oldest live index
# (caller's clock), k, TTL seconds, [index, delta, index, delta, ...]]. Returns
# msgpack, per key [total, lo, bucket lo, ..., bucket lo+k-1]. msgpack both ways
# keeps a flush of hundreds of counters to two strings instead of thousands of
# RESP items. Indices are written with %d, never Lua's number-to-string
# conversion (14 significant digits).
_FLUSH_LUA = """
local function field(i) return string.format('%d', i) end
local plan = cmsgpack.unpack(ARGV[1])
local out = {}
for i = 1, #KEYS do
  local key = KEYS[i]
  local oldest, k, ttl, deltas = plan[i][1], plan[i][2], plan[i][3], plan[i][4]
  local head = redis.call('HMGET', key, 'lo', 't')
  local lo = tonumber(head[1] or oldest)
  local total = tonumber(head[2] or 0)
  if oldest > lo then
    if oldest - lo > 256 then
      -- idle for long: scan the fields rather than every index in between
      local flat = redis.call('HGETALL', key)
      for j = 1, #flat, 2 do
        local f = flat[j]
        if f ~= 't' and f ~= 'lo' and tonumber(f) < oldest then
          total = total - tonumber(flat[j + 1])
          redis.call('HDEL', key, f)
        end
      end
    else
      local gone = {}
      for idx = lo, oldest - 1 do gone[#gone + 1] = field(idx) end
      local values = redis.call('HMGET', key, unpack(gone))
      for j = 1, #gone do
        if values[j] then total = total - tonumber(values[j]) end
      end
      redis.call('HDEL', key, unpack(gone))
    end
    lo = oldest
  end
  for j = 1, #deltas, 2 do
    local idx = deltas[j]
    if idx >= lo then
      redis.call('HINCRBY', key, field(idx), deltas[j + 1])
      total = total + deltas[j + 1]
    end
  end
  redis.call('HSET', key, 't', total, 'lo', field(lo))
  redis.call('EXPIRE', key, ttl)
  local want = {}
  for idx = lo, lo + k - 1 do want[#want + 1] = field(idx) end
  local row = {total, lo}
  for j, v in ipairs(redis.call('HMGET', key, unpack(want))) do
    row[j + 2] = tonumber(v or 0)
  end
  out[i] = row
end
return cmsgpack.pack(out)
"""

_PLAN_ENCODER = msgspec.msgpack.Encoder()
_ROWS_DECODER = msgspec.msgpack.Decoder(list[list[int]])
_REDIS_ERRORS = (coredis.exceptions.RedisError, OSError, TimeoutError, trio.TooSlowError)


class ThresholdStoreUnavailable(Exception):
    """Redis could not be reached or answered wrongly: the counts are not shared."""


class _SharedCounter:
    __slots__ = ("exact_through", "key", "known", "pending", "touched", "ttl_seconds", "view")

    def __init__(
        self, key: str, window_seconds: int, bucket_count: int, horizon_seconds: float
    ) -> None:
        self.key = key
        self.view = BucketWindow(window_seconds, bucket_count)
        self.pending: dict[int, int] = {}  # bucket index -> own requests not yet pushed
        self.touched = False
        # Buckets read individually per flush: enough to slide the view exactly for
        # horizon_seconds; the rest of the total is read as one sum.
        self.known = min(self.view.slots, max(1, math.ceil(horizon_seconds / self.view.width)))
        # The view is exact up to this bucket index; beyond it (or before the first
        # read) the counter is cold and must be read before deciding.
        self.exact_through = -(2**62)
        # A bucket is live for window + width; a little more so a reader never misses one.
        self.ttl_seconds = math.ceil(window_seconds + self.view.width) + 1


class _Bound:
    __slots__ = ("counters", "empty", "plan")

    def __init__(self, plan: Plan, counters: list[_SharedCounter]) -> None:
        self.plan = plan
        self.counters = counters
        self.empty = plan.empty


class RedisThresholdStore:
    """Call `check_and_count_nowait` inline; await `check_and_count` when it says None."""

    def __init__(
        self, client: coredis.Redis[Any], config: ThresholdConfig, settings: RedisStoreSettings
    ) -> None:
        self._client = client
        self._script = client.register_script(_FLUSH_LUA)
        self._config = config
        self._settings = settings
        self._batch_size = settings.batch_size
        self._bound: dict[tuple[str, str], _Bound] = {}
        self._counters: dict[tuple[str, str, int], _SharedCounter] = {}
        self._touched: list[_SharedCounter] = []
        self._unread = 0  # own requests counted locally, not yet in a completed read
        self._last_now = -math.inf
        self._flush_lock = trio.Lock()
        # Crossings are remembered per process: with P processes a crossing may be
        # reported up to P times per window (each saw the count go over).
        self._crossings = CrossingLatch()

    @property
    def config(self) -> ThresholdConfig:
        return self._config

    def overshoot_bound(self, limit: int, processes: int) -> int:
        """Most requests P processes can allow in one window of a rule with `limit`."""
        return limit + (processes - 1) * self._batch_size

    def check_and_count_nowait(
        self,
        user_id: str,
        srv: str,
        now_seconds: float,
        attributes: Mapping[str, AttributeValue] = NO_ATTRIBUTES,
    ) -> Decision | None:
        """Decide on the local view, or None when a flush must come first.

        A flush must come first when `batch_size` of this process's requests are
        unread (the overshoot bound), or when a counter is cold: never read (a
        new User ID, or a restarted process, starts from the shared count rather
        than from zero) or idle past `view_horizon_seconds`.
        """
        bound = self._bound.get((user_id, srv))
        if bound is None:
            bound = self._bind(user_id, srv)
        if bound.empty:
            return ALLOW
        if now_seconds > self._last_now:
            self._last_now = now_seconds
        counters = bound.counters
        cold = False
        for c in counters:
            if not c.touched:
                c.touched = True
                self._touched.append(c)
            if c.view.index(now_seconds) > c.exact_through:
                cold = True
        if cold or self._unread >= self._batch_size:
            return None
        decision = decide([c.view.count(now_seconds) + 1 for c in counters], bound.plan, attributes)
        if decision.action is not Action.QUARANTINE:
            self._count(counters, now_seconds)
            if decision.action is Action.WARN:
                decision = self._crossings.mark(user_id, decision, now_seconds)
        return decision

    async def check_and_count(
        self,
        user_id: str,
        srv: str,
        now_seconds: float,
        attributes: Mapping[str, AttributeValue] = NO_ATTRIBUTES,
    ) -> Decision:
        while True:
            decision = self.check_and_count_nowait(user_id, srv, now_seconds, attributes)
            if decision is not None:
                return decision
            async with self._flush_lock:
                # Another task may have flushed while this one waited for the lock.
                if self._unread >= self._batch_size or self._cold(user_id, srv, now_seconds):
                    await self._flush_locked()

    def commit_release(self, user_id: str, srv: str, now_seconds: float) -> None:
        """Count a released request once, at release; it reaches Redis with the next flush.

        Not subject to the batch limit: the User asked for it to be processed.
        """
        bound = self._bound.get((user_id, srv))
        if bound is None:
            bound = self._bind(user_id, srv)
        if now_seconds > self._last_now:
            self._last_now = now_seconds
        for c in bound.counters:
            if not c.touched:
                c.touched = True
                self._touched.append(c)
        if bound.counters:
            self._count(bound.counters, now_seconds)

    async def flush(self) -> None:
        """Push pending counts and refresh the view of every touched counter."""
        async with self._flush_lock:
            await self._flush_locked()

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Flush every `flush_interval_seconds` so idle processes still share their counts."""
        task_status.started()
        while True:
            await trio.sleep(self._settings.flush_interval_seconds)
            if self._touched:
                try:
                    await self.flush()
                except ThresholdStoreUnavailable as exc:
                    log.warning("threshold counts not shared: %s", exc)

    def _cold(self, user_id: str, srv: str, now_seconds: float) -> bool:
        counters = self._bound[(user_id, srv)].counters
        return any(c.view.index(now_seconds) > c.exact_through for c in counters)

    def _count(self, counters: list[_SharedCounter], now_seconds: float) -> None:
        for c in counters:
            view = c.view
            view.add(now_seconds)
            # add() counts into view.head (the newest bucket, even if the clock stepped back).
            c.pending[view.head] = c.pending.get(view.head, 0) + 1
        self._unread += 1

    async def _flush_locked(self) -> None:
        touched, self._touched = self._touched, []
        if not touched:
            return
        sent_unread = self._unread
        keys: list[str] = []
        plan: list[tuple[int, int, int, list[int]]] = []
        taken: list[dict[int, int]] = []
        heads: list[int] = []
        for c in touched:
            c.touched = False
            pending, c.pending = c.pending, {}
            taken.append(pending)
            head = max(c.view.index(self._last_now), c.view.head)
            heads.append(head)
            oldest = head - c.view.slots + 1
            deltas = [x for i, n in pending.items() if i >= oldest for x in (i, n)]
            keys.append(c.key)
            plan.append((oldest, c.known, c.ttl_seconds, deltas))
        try:
            with trio.fail_after(self._settings.stream_timeout_seconds * 2):
                reply: object = await self._script(keys=keys, args=[_PLAN_ENCODER.encode(plan)])
            if not isinstance(reply, bytes):  # a client built with decode_responses=True
                raise TypeError(f"flush reply is {type(reply).__name__}, not bytes")
            rows = _ROWS_DECODER.decode(reply)
        except _REDIS_ERRORS as exc:
            self._restore(touched, taken)
            raise ThresholdStoreUnavailable(f"{type(exc).__name__}: {exc}") from exc
        except (msgspec.DecodeError, TypeError) as exc:
            self._restore(touched, taken)
            raise ThresholdStoreUnavailable(f"unexpected flush reply: {exc}") from exc
        if len(rows) != len(touched) or any(len(row) < 2 for row in rows):
            self._restore(touched, taken)
            raise ThresholdStoreUnavailable(f"flush reply has {len(rows)} rows for {len(touched)}")
        for c, head, row in zip(touched, heads, rows, strict=True):
            total, lo, *known = row
            view = c.view
            view.load_summary(head, lo, known, total)
            # Requests counted while the flush was in flight are in c.pending again.
            for i, n in c.pending.items():
                view.add_index(i, n)
            c.exact_through = view.exact_through(lo, len(known))
        self._unread -= sent_unread

    def _restore(self, touched: list[_SharedCounter], taken: list[dict[int, int]]) -> None:
        for c, pending in zip(touched, taken, strict=True):
            for i, n in pending.items():
                c.pending[i] = c.pending.get(i, 0) + n
            if not c.touched:
                c.touched = True
                self._touched.append(c)

    def _bind(self, user_id: str, srv: str) -> _Bound:
        plan = compile_plan(self._config, user_id, srv)
        counters: list[_SharedCounter] = []
        buckets = self._config.bucket_count
        for spec in plan.counters:
            key = (user_id, spec.srv, spec.window_seconds)
            counter = self._counters.get(key)
            if counter is None:
                # bucket_count is in the key: processes must agree on bucket indices.
                redis_key = (
                    f"{self._settings.key_prefix}{{{user_id}}}:{spec.srv}:"
                    f"{spec.window_seconds}:{buckets}"
                )
                counter = _SharedCounter(
                    redis_key, spec.window_seconds, buckets, self._settings.view_horizon_seconds
                )
                self._counters[key] = counter
            counters.append(counter)
        bound = self._bound[(user_id, srv)] = _Bound(plan, counters)
        return bound


@asynccontextmanager
async def open_redis_threshold_store(
    config: ThresholdConfig, settings: RedisStoreSettings
) -> AsyncIterator[RedisThresholdStore]:
    """A store on its own connection pool; the caller runs `store.run` in a nursery."""
    client: coredis.Redis[Any] = coredis.Redis.from_url(
        settings.url,
        connect_timeout=settings.connect_timeout_seconds,
        stream_timeout=settings.stream_timeout_seconds,
    )
    try:
        async with client:
            yield RedisThresholdStore(client, config, settings)
    except BaseExceptionGroup as group:
        # coredis's nursery wraps whatever the caller's block raised; give it back as it was.
        if len(group.exceptions) == 1:
            raise group.exceptions[0] from None
        raise
