"""Anomaly-detection state on the shared Redis: the rules in force and their audit trail
(and, for a node counting in memory, its saved window counts), one set for every node.

`ThresholdStateStore` (gateway/stores/threshold_sqlite.py: the protocol) for
`[state] backend = "redis"`. Hash tag `{rules}`: `in_force` the record (msgpack),
`audit` its entries newest first, `counts` a hash of saved counts. `replace_rules`
is one script, so the rules in force and the audit entry that explains them change
together, as in the SQLite transaction.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from typing import Any, Final

import msgspec

from gateway.stores.redis_shared import REDIS_ERRORS, SharedRedis, SharedStoreUnavailable
from gateway.stores.threshold_sqlite import MAX_AUDIT_ROWS, ThresholdStateError
from thresholds.rules_state import RulesAuditEntry, RulesRecord
from thresholds.snapshot import CounterKey, CounterState, decode_state, encode_state

# KEYS: in_force, audit. ARGV: the record, the audit entry.
_REPLACE_LUA: Final = """
redis.call('SET', KEYS[1], ARGV[1])
redis.call('LPUSH', KEYS[2], ARGV[2])
return 1
"""
_ENCODER: Final = msgspec.msgpack.Encoder()
_RECORD_DECODER: Final = msgspec.msgpack.Decoder(RulesRecord)
_AUDIT_DECODER: Final = msgspec.msgpack.Decoder(RulesAuditEntry)


class RedisThresholdStateStore:
    def __init__(self, shared: SharedRedis) -> None:
        self._shared = shared
        self._client: Any = shared.client
        self._replace = self._client.register_script(_REPLACE_LUA)

    def _key(self, part: str) -> str:
        return self._shared.keys.of("thresholds", "rules", part)

    async def load_rules(self) -> RulesRecord | None:
        raw = await self._read(self._client.get(self._key("in_force")))
        return None if raw is None else _RECORD_DECODER.decode(bytes(raw))

    async def replace_rules(self, record: RulesRecord, audit: RulesAuditEntry) -> None:
        keys = [self._key("in_force"), self._key("audit")]
        args = [_ENCODER.encode(record), _ENCODER.encode(audit)]
        await self._durable(self._replace(keys=keys, args=args))

    async def audit(self, limit: int = MAX_AUDIT_ROWS) -> list[RulesAuditEntry]:
        bounded = max(0, min(limit, MAX_AUDIT_ROWS))
        if bounded == 0:
            return []
        entries = await self._read(self._client.lrange(self._key("audit"), 0, bounded - 1))
        return [_AUDIT_DECODER.decode(bytes(e)) for e in entries]

    async def load_counts(self) -> dict[CounterKey, CounterState]:
        saved = await self._read(self._client.hgetall(self._key("counts")))
        counts: dict[CounterKey, CounterState] = {}
        for field, raw in dict(saved).items():
            user_id, srv, window = bytes(field).decode().split("|")
            counts[(user_id, srv, int(window))] = decode_state(bytes(raw))
        return counts

    async def save_counts(
        self, live: Mapping[CounterKey, CounterState], gone: Sequence[CounterKey]
    ) -> None:
        key = self._key("counts")
        if live:
            fields = {_field(k): encode_state(state) for k, state in live.items()}
            await self._durable(self._client.hset(key, fields))
        if gone:
            await self._durable(self._client.hdel(key, [_field(k) for k in gone]))

    async def _durable(self, write: Any) -> Any:
        try:
            return await self._shared.durable(write)
        except SharedStoreUnavailable as exc:
            raise ThresholdStateError(f"threshold state on Redis: {exc}") from exc

    async def _read(self, read: Any) -> Any:
        try:
            return await read
        except REDIS_ERRORS as exc:
            raise ThresholdStateError(f"threshold state on Redis: {exc}") from exc


def _field(key: CounterKey) -> str:
    user_id, srv, window = key
    return f"{user_id}|{srv}|{window}"


@asynccontextmanager
async def open_redis_threshold_state(
    shared: SharedRedis,
) -> AsyncIterator[RedisThresholdStateStore]:
    """No task of its own: every call is a round trip on the shared client."""
    yield RedisThresholdStateStore(shared)
