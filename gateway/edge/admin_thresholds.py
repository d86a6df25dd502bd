"""Admin routes for threshold rules: show them, replace them at run time, read the audit.

    GET /admin/thresholds        the rules in force (JSON)
    PUT /admin/thresholds        replace them (TOML body, as a rules file)
    GET /admin/thresholds/audit  every change of the rules in force, newest first

A run-time change is stored (gateway/stores/threshold_sqlite.py) before it is applied, so
it is in force after a restart until the operator changes the rules file
(precedence in thresholds/rules_state.py). It needs the in-process store in a
single process: with Redis every process must judge by one rule set, and with
`--workers` each worker counts on its own.
"""

from __future__ import annotations

import datetime as dt
import logging

import msgspec

from gateway.core.clock import Clock
from gateway.core.config import Config
from gateway.stores.threshold_memory import MemoryThresholdStore
from gateway.stores.threshold_sqlite import ThresholdStateError, ThresholdStateStore
from gateway.stores.threshold_state import CounterStore, read_rules_file
from thresholds.config import ThresholdConfigError, decode_threshold_config
from thresholds.rules_state import RulesRecord, audit_entry, file_sha256

log = logging.getLogger("duisgw.admin")

JSON = b"application/json"
TOML = b"application/toml"
TEXT = b"text/plain; charset=utf-8"
Answer = tuple[int, bytes, bytes]

REDIS_REFUSAL = (
    'run-time threshold changes are refused with thresholds.store = "redis": every gateway '
    "process sharing the counts must judge by the same rules, so they come from "
    "thresholds.rules_file alone; change that file on every node and restart them"
)
WORKERS_REFUSAL = (
    'run-time threshold changes need a single process with thresholds.store = "memory" '
    '(each worker counts on its own); with --workers use thresholds.store = "redis" and '
    "thresholds.rules_file"
)


class AuditView(msgspec.Struct, frozen=True):
    at: dt.datetime
    source: str
    by: str
    rules: int
    attribute_limits: int
    file_sha256: str
    note: str
    toml: str


def _json(status: int, value: object) -> Answer:
    return status, msgspec.json.encode(value), JSON


class ThresholdsAdmin:
    def __init__(
        self,
        counters: CounterStore,
        store: ThresholdStateStore,
        config: Config,
        clock: Clock,
        *,
        worker_count: int = 1,
    ) -> None:
        self._counters = counters
        self._store = store
        self._config = config
        self._clock = clock
        self._worker_count = worker_count

    async def route(
        self, method: str, rest: list[str], body: bytes, media_type: bytes, peer: str
    ) -> Answer:
        """`rest`: the path after /admin/thresholds; `media_type`: the body's, lower-cased."""
        if rest == ["audit"] and method == "GET":
            entries = await self._store.audit()
            return _json(
                200,
                [
                    AuditView(
                        at=e.at,
                        source=e.source,
                        by=e.by,
                        rules=e.rules,
                        attribute_limits=e.attribute_limits,
                        file_sha256=e.file_sha256,
                        note=e.note,
                        toml=e.toml.decode("utf-8", "replace"),
                    )
                    for e in entries
                ],
            )
        if rest:
            return _json(404, {"error": "unknown thresholds path"})
        if method == "GET":
            return _json(200, self._counters.config)
        if method != "PUT":
            return 405, b"GET or PUT (TOML rules)\n", TEXT
        if media_type != TOML:  # never a type a browser may send cross-origin unasked
            return _json(415, {"error": "PUT the rules as Content-Type: application/toml"})
        return await self._replace(body, peer)

    async def _replace(self, body: bytes, peer: str) -> Answer:
        counters = self._counters
        if not isinstance(counters, MemoryThresholdStore):
            return _json(409, {"error": REDIS_REFUSAL})
        if self._worker_count > 1:
            return _json(409, {"error": WORKERS_REFUSAL})
        try:
            rules = decode_threshold_config(body)
        except ThresholdConfigError as exc:
            return _json(400, {"error": str(exc)})
        try:
            file_raw = await read_rules_file(self._config)
        except OSError as exc:  # unreadable now: recorded as changed, so it wins once readable
            log.warning("thresholds.rules_file unreadable while rules are set: %s", exc)
            file_raw = b""
        record = RulesRecord(
            source="admin",
            toml=body,
            file_sha256=file_sha256(file_raw),
            set_at=self._clock.now(),
            set_by=peer,
        )
        try:  # stored first: what is applied is what a restart will apply
            await self._store.replace_rules(record, audit_entry(record, rules, "set at run time"))
        except ThresholdStateError:
            log.exception("threshold rules not stored; the rules in force are unchanged")
            return _json(500, {"error": "the rules could not be stored (logged); unchanged"})
        counters.reload(rules)
        log.warning(
            "thresholds changed from %s: %d rules, %d attribute limits",
            peer,
            len(rules.rules),
            len(rules.attribute_limits),
        )
        return _json(200, {"result": "thresholds updated", "rules": len(rules.rules)})
