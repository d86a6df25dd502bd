"""The open local commands on the shared Redis: an 8.13 finds its command on any node.

`LocalCommandStore` (gateway/stores/local_commands.py) for `[state] backend = "redis"`.
Per originator, one hash tag (one Cluster slot): `local:{EUI}:rec` a hash
"<target>:<counter>" -> the record (msgpack, the same encoding as on SQLite),
`local:{EUI}:age` the same fields by issue time (the cap drops the oldest),
`local:{EUI}:exp` by expiry (each put sweeps that originator's expired ones).

`put` and `take` are one script each, so a command is taken by one caller only and the
cap and sweep never race a put. An originator that stops sending leaves its keys to
Redis's own expiry: each put extends them to at least the command's time to live plus
a day (a relative TTL, so an injected clock cannot make Redis drop them early).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any, Final

from gateway.core.local_commands import IssuedLocalCommand
from gateway.stores.local_commands import (
    DEFAULT_MAX_PER_ORIGINATOR,
    LocalCommandStoreError,
    decode_command,
    encode_command,
)
from gateway.stores.redis_shared import REDIS_ERRORS, SharedRedis, SharedStoreUnavailable
from gateway.stores.times import to_us
from mmc.identifiers import RequestId

EXPIRED_PER_PUT: Final = 64  # as on SQLite: expiry keeps pace, bounded per put
KEY_GRACE_MS: Final = 86_400_000  # keys outlive their newest command by a day

# KEYS: rec, age, exp. ARGV: field, record, issued µs, expires µs, cap, sweep limit,
# key TTL ms. Replaces a command with the same field (counted once).
_PUT_LUA: Final = """
local field = ARGV[1]
local gone = redis.call('ZRANGE', KEYS[3], '-inf', ARGV[3], 'BYSCORE', 'LIMIT', 0, ARGV[6])
for _, old in ipairs(gone) do
  redis.call('HDEL', KEYS[1], old)
  redis.call('ZREM', KEYS[2], old)
  redis.call('ZREM', KEYS[3], old)
end
redis.call('HSET', KEYS[1], field, ARGV[2])
redis.call('ZADD', KEYS[2], ARGV[3], field)
redis.call('ZADD', KEYS[3], ARGV[4], field)
local over = redis.call('ZCARD', KEYS[2]) - tonumber(ARGV[5])
if over > 0 then
  local oldest = redis.call('ZPOPMIN', KEYS[2], over)
  for i = 1, #oldest, 2 do
    redis.call('HDEL', KEYS[1], oldest[i])
    redis.call('ZREM', KEYS[3], oldest[i])
  end
end
for i = 1, 3 do
  if redis.call('PTTL', KEYS[i]) < tonumber(ARGV[7]) then
    redis.call('PEXPIRE', KEYS[i], ARGV[7])
  end
end
"""
# KEYS: rec, age, exp. ARGV: field. The record, removed; nil if none.
_TAKE_LUA: Final = """
local record = redis.call('HGET', KEYS[1], ARGV[1])
if not record then return nil end
redis.call('HDEL', KEYS[1], ARGV[1])
redis.call('ZREM', KEYS[2], ARGV[1])
redis.call('ZREM', KEYS[3], ARGV[1])
return record
"""


class RedisLocalCommandStore:
    def __init__(
        self, shared: SharedRedis, *, max_per_originator: int = DEFAULT_MAX_PER_ORIGINATOR
    ) -> None:
        if max_per_originator < 1:
            raise ValueError("max_per_originator must be at least 1")
        self._shared = shared
        self._client: Any = shared.client
        self._cap = max_per_originator
        self._put = self._client.register_script(_PUT_LUA)
        self._take = self._client.register_script(_TAKE_LUA)

    async def put(self, command: IssuedLocalCommand) -> None:
        """Keep `command` (durable on return), replacing one with the same RequestID."""
        key = command.key
        issued_us, expires_us = to_us(command.issued_at), to_us(command.expires_at)
        ttl_ms = max(0, expires_us - issued_us) // 1000 + KEY_GRACE_MS
        args = [
            _field(key),
            encode_command(command),
            issued_us,
            expires_us,
            self._cap,
            EXPIRED_PER_PUT,
            ttl_ms,
        ]
        try:
            await self._shared.durable(self._put(keys=self._keys(key), args=args))
        except SharedStoreUnavailable as exc:
            raise LocalCommandStoreError(f"local commands on Redis: {exc}") from exc

    async def get(self, request_id: RequestId, now: dt.datetime) -> IssuedLocalCommand | None:
        key = self._keys(request_id)[0]
        try:
            record = await self._client.hget(key, _field(request_id))
        except REDIS_ERRORS as exc:
            raise LocalCommandStoreError(f"local commands on Redis: {exc}") from exc
        return _open(record, now)

    async def take(self, request_id: RequestId, now: dt.datetime) -> IssuedLocalCommand | None:
        """Remove and return the open command (None if another caller took it first)."""
        try:
            record = await self._shared.durable(
                self._take(keys=self._keys(request_id), args=[_field(request_id)])
            )
        except SharedStoreUnavailable as exc:
            raise LocalCommandStoreError(f"local commands on Redis: {exc}") from exc
        return _open(record, now)

    def _keys(self, request_id: RequestId) -> list[str]:
        return [
            self._shared.keys.of("local", request_id.originator, kind)
            for kind in ("rec", "age", "exp")
        ]


def _field(request_id: RequestId) -> str:
    return f"{request_id.target}:{request_id.counter:020d}"


def _open(record: bytes | None, now: dt.datetime) -> IssuedLocalCommand | None:
    if record is None:
        return None
    command = decode_command(bytes(record))
    return command if command.expires_at > now else None


@asynccontextmanager
async def open_redis_local_command_store(
    shared: SharedRedis, *, max_per_originator: int = DEFAULT_MAX_PER_ORIGINATOR
) -> AsyncIterator[RedisLocalCommandStore]:
    """No task of its own: every call is one round trip on the shared client."""
    yield RedisLocalCommandStore(shared, max_per_originator=max_per_originator)
