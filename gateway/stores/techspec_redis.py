"""The techspec stores on the shared Redis: tables and Install and Leave cases every node
shares (`[state] backend = "redis"`; gateway/stores/techspec_store.py: the protocols).

Reference tables, hash tag `{tables}`: `last:<kind>` the newest revision number,
`meta:<kind>` revision -> its audit row (msgpack), `doc:<kind>` revision -> its document
(only the last KEEP_DOCUMENTS). `replace` is one script: number, row, document and the
drop of the oldest document together, so two nodes replacing at once get consecutive
revisions. Revisions are immutable once written, so reads need no script.

Install and Leave, hash tag `{il}`: `case` hub -> the case (JSON, as on SQLite), `open`
the hubs whose case is not closed by notification time, `events:<hub>` its history.
`save` is one script comparing the stored case with the caller's `before` (their
encodings: one encoder, deterministic), so of two nodes moving one case on, one wins
and the other gets StaleCase.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any, Final

import msgspec

from gateway.core.techspec.install_leave import InstallLeaveCase
from gateway.stores.redis_shared import REDIS_ERRORS, SharedRedis, SharedStoreUnavailable
from gateway.stores.techspec_sqlite import MAX_HISTORY_ROWS
from gateway.stores.techspec_store import (
    KEEP_DOCUMENTS,
    MAX_AUDIT_ROWS,
    CaseEvent,
    DocumentFormat,
    StaleCase,
    TableKind,
    TableRevision,
    TechspecStoreError,
    check_revision_text,
    decode_case,
    document_digest,
    encode_case,
)
from gateway.stores.times import from_us, to_us

# KEYS: last, meta, doc. ARGV: the audit row, the document, KEEP_DOCUMENTS.
_REPLACE_LUA: Final = """
local revision = redis.call('INCR', KEYS[1])
redis.call('HSET', KEYS[2], revision, ARGV[1])
redis.call('HSET', KEYS[3], revision, ARGV[2])
redis.call('HDEL', KEYS[3], revision - tonumber(ARGV[3]))
return revision
"""
# KEYS: case, open, events. ARGV: hub, before ("" none), after, closed ("1"/"0"),
# notified µs, the event. 0 if the stored case is not `before`.
_SAVE_LUA: Final = """
local stored = redis.call('HGET', KEYS[1], ARGV[1]) or ''
if stored ~= ARGV[2] then return 0 end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[3])
if ARGV[4] == '1' then
  redis.call('ZREM', KEYS[2], ARGV[1])
else
  redis.call('ZADD', KEYS[2], ARGV[5], ARGV[1])
end
redis.call('RPUSH', KEYS[3], ARGV[6])
return 1
"""


class _Row(msgspec.Struct, array_like=True, frozen=True):
    """A revision's audit row as kept (its number is the hash field)."""

    format: DocumentFormat
    loaded_at_us: int
    actor: str
    reason: str
    summary: str
    sha256: str
    size_bytes: int


class _Event(msgspec.Struct, array_like=True, frozen=True):
    at_us: int
    case: bytes


_ENCODER: Final = msgspec.msgpack.Encoder()
_ROW_DECODER: Final = msgspec.msgpack.Decoder(_Row)
_EVENT_DECODER: Final = msgspec.msgpack.Decoder(_Event)


class RedisTechspecStore:
    """ReferenceTableStore and InstallLeaveStore on the shared Redis."""

    def __init__(self, shared: SharedRedis) -> None:
        self._shared = shared
        self._client: Any = shared.client
        self._replace = self._client.register_script(_REPLACE_LUA)
        self._save = self._client.register_script(_SAVE_LUA)

    def _table(self, part: str, kind: TableKind) -> str:
        return self._shared.keys.of("techspec", "tables", part, kind)

    def _il(self, *rest: str) -> str:
        return self._shared.keys.of("techspec", "il", *rest)

    # ------------------------------------------------------------ reference tables

    async def current(self, kind: TableKind) -> TableRevision | None:
        last = await self._read(self._client.get(self._table("last", kind)))
        if last is None:
            return None
        revision = int(last)
        row = await self._read(self._client.hget(self._table("meta", kind), str(revision)))
        document = await self._read(self._client.hget(self._table("doc", kind), str(revision)))
        return _revision(kind, revision, bytes(row), b"" if document is None else bytes(document))

    async def replace(
        self,
        kind: TableKind,
        document: bytes,
        fmt: DocumentFormat,
        *,
        actor: str,
        reason: str,
        summary: str,
        at: dt.datetime,
    ) -> TableRevision:
        check_revision_text(actor, reason, document)
        row = _Row(fmt, to_us(at), actor, reason, summary, document_digest(document), len(document))
        keys = [self._table(part, kind) for part in ("last", "meta", "doc")]
        args = [_ENCODER.encode(row), document, KEEP_DOCUMENTS]
        revision = int(await self._durable(self._replace(keys=keys, args=args)))
        return _from_row(kind, revision, row, document)

    async def audit(self, kind: TableKind, *, limit: int = MAX_AUDIT_ROWS) -> list[TableRevision]:
        bounded = max(0, min(limit, MAX_AUDIT_ROWS))
        last = await self._read(self._client.get(self._table("last", kind)))
        if last is None or bounded == 0:
            return []
        wanted = [str(r) for r in range(int(last), max(0, int(last) - bounded), -1)]
        rows = await self._read(self._client.hmget(self._table("meta", kind), wanted))
        return [
            _revision(kind, int(number), bytes(row), b"")
            for number, row in zip(wanted, rows, strict=True)
            if row is not None
        ]

    # ------------------------------------------------------------ install and leave

    async def get(self, hub_id: str) -> InstallLeaveCase | None:
        record = await self._read(self._client.hget(self._il("case"), hub_id))
        return None if record is None else decode_case(bytes(record))

    async def save(
        self, before: InstallLeaveCase | None, after: InstallLeaveCase, *, at: dt.datetime
    ) -> None:
        if before is not None and before.hub_id != after.hub_id:
            raise ValueError("a case moves on for one hub only")
        record = encode_case(after)
        keys = [self._il("case"), self._il("open"), self._il("events", after.hub_id)]
        args = [
            after.hub_id,
            b"" if before is None else encode_case(before),
            record,
            "1" if after.state == "closed" else "0",
            to_us(after.notified_at),
            _ENCODER.encode(_Event(to_us(at), record)),
        ]
        if not await self._durable(self._save(keys=keys, args=args)):
            raise StaleCase(f"the case of hub {after.hub_id} changed; read it again")

    async def open_cases(self) -> list[InstallLeaveCase]:
        hubs = await self._read(self._client.zrange(self._il("open"), 0, -1))
        if not hubs:
            return []
        records = await self._read(self._client.hmget(self._il("case"), list(hubs)))
        return [decode_case(bytes(r)) for r in records if r is not None]

    async def history(self, hub_id: str) -> list[CaseEvent]:
        entries = await self._read(
            self._client.lrange(self._il("events", hub_id), 0, MAX_HISTORY_ROWS - 1)
        )
        events = (_EVENT_DECODER.decode(bytes(e)) for e in entries)
        return [
            CaseEvent(hub_id=hub_id, at=from_us(e.at_us), case=decode_case(e.case)) for e in events
        ]

    async def _durable(self, write: Any) -> Any:
        try:
            return await self._shared.durable(write)
        except SharedStoreUnavailable as exc:
            raise TechspecStoreError(f"techspec store on Redis: {exc}") from exc

    async def _read(self, read: Any) -> Any:
        try:
            return await read
        except REDIS_ERRORS as exc:
            raise TechspecStoreError(f"techspec store on Redis: {exc}") from exc


def _revision(kind: TableKind, revision: int, row: bytes, document: bytes) -> TableRevision:
    return _from_row(kind, revision, _ROW_DECODER.decode(row), document)


def _from_row(kind: TableKind, revision: int, row: _Row, document: bytes) -> TableRevision:
    return TableRevision(
        kind=kind,
        revision=revision,
        format=row.format,
        loaded_at=from_us(row.loaded_at_us),
        actor=row.actor,
        reason=row.reason,
        summary=row.summary,
        sha256=row.sha256,
        size_bytes=row.size_bytes,
        document=document,
    )


@asynccontextmanager
async def open_redis_techspec_store(shared: SharedRedis) -> AsyncIterator[RedisTechspecStore]:
    """No task of its own: every call is a round trip on the shared client."""
    yield RedisTechspecStore(shared)
