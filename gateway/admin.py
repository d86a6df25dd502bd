"""The admin listener: health, readiness, metrics, reload, quarantine, outbox, thresholds,
and the dev inbox (gateway/inbox.py).

A separate port from DUIS so it can live on a management network. JSON in and
out (msgspec); the `duisgw quarantine` / `duisgw outbox` commands call it.
"""

from __future__ import annotations

import base64
import datetime as dt
import logging
from collections.abc import Callable
from pathlib import Path
from urllib.parse import parse_qs

import msgspec
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from gateway.http import HttpRequest
from gateway.inbox import Inbox
from gateway.outbox import NotDeadLettered, Outbox, StoredMessage, UnknownMessage
from gateway.quarantine_ops import QuarantineOps
from gateway.server import PeerInfo
from gateway.state import GatewayState
from thresholds.config import ThresholdConfigError, decode_threshold_config
from thresholds.memory import MemoryThresholdStore
from thresholds.quarantine import NotHeld, QuarantinedRequest, UnknownEventRef

log = logging.getLogger("duisgw.admin")

JSON = b"application/json"
TEXT = b"text/plain; charset=utf-8"
Answer = tuple[int, bytes, bytes]
AUDIT_FILE = "thresholds-audit.jsonl"
INBOX_FILE = "inbox.jsonl"


class QuarantineView(msgspec.Struct, frozen=True):
    event_ref: int
    user_id: str
    request_id: str
    srv: str
    duis_version: str
    breach: str
    held_at: dt.datetime
    state: str
    finished_at: dt.datetime | None = None
    request_xml: str | None = None


def _view(item: QuarantinedRequest, with_body: bool = False) -> QuarantineView:
    return QuarantineView(
        event_ref=item.event_ref,
        user_id=item.user_id,
        request_id=item.request_id,
        srv=item.srv,
        duis_version=item.duis_version,
        breach=item.breach,
        held_at=item.held_at,
        state=item.state,
        finished_at=item.finished_at,
        request_xml=item.raw_request.decode("utf-8", "replace") if with_body else None,
    )


class MessageView(msgspec.Struct, frozen=True):
    message_id: str
    user_id: str
    user_seq: int
    kind: str
    url: str
    state: str
    attempts: int
    last_error: str | None
    created_at: dt.datetime


def _message(m: StoredMessage) -> MessageView:
    return MessageView(
        m.message_id,
        m.user_id,
        m.user_seq,
        m.kind,
        m.url,
        m.state,
        m.attempts,
        m.last_error,
        m.created_at,
    )


def _json(status: int, value: object) -> Answer:
    return status, msgspec.json.encode(value), JSON


class AdminApi:
    def __init__(
        self,
        state: GatewayState,
        reload: Callable[[], str],
        quarantine: QuarantineOps,
        outbox: Outbox,
        *,
        state_dir: Path,
    ) -> None:
        self._state = state
        self._reload = reload
        self._ops = quarantine
        self._outbox = outbox
        self._audit = state_dir / AUDIT_FILE
        self._inbox = Inbox(state_dir / INBOX_FILE)
        self.ready = False

    async def __call__(self, request: HttpRequest, peer: PeerInfo) -> Answer:
        path, _, query = request.target.partition("?")
        params = {k: v[0] for k, v in parse_qs(query).items()}
        parts = [p for p in path.split("/") if p]
        try:
            return await self._route(request.method, parts, params, request, peer)
        except (ValueError, KeyError) as exc:
            return _json(400, {"error": str(exc)})

    async def _route(
        self,
        method: str,
        parts: list[str],
        params: dict[str, str],
        request: HttpRequest,
        peer: PeerInfo,
    ) -> Answer:
        if parts == ["healthz"]:
            return 200, b"ok\n", TEXT
        if parts == ["readyz"]:
            return (200, b"ready\n", TEXT) if self.ready else (503, b"not ready\n", TEXT)
        if parts == ["metrics"]:
            return 200, generate_latest(self._state.metrics.registry), CONTENT_TYPE_LATEST.encode()
        if parts[:1] == ["inbox"]:
            return self._inbox_route(method, parts[1:], params, request)
        if parts[:1] != ["admin"]:
            return 404, b"unknown admin path\n", TEXT
        rest = parts[1:]
        if rest == ["reload"] and method == "POST":
            message = self._reload()
            return _json(200 if message.startswith("reloaded") else 500, {"result": message})
        if rest == ["status"]:
            return _json(200, self._status())
        if rest[:1] == ["quarantine"]:
            return await self._quarantine(method, rest[1:], params)
        if rest[:1] == ["outbox"]:
            return await self._outbox_route(method, rest[1:], params)
        if rest == ["thresholds"]:
            return self._thresholds(method, request, peer)
        return 404, b"unknown admin path\n", TEXT

    def _inbox_route(
        self, method: str, rest: list[str], params: dict[str, str], request: HttpRequest
    ) -> Answer:
        if method == "POST" and len(rest) == 1:
            message_id = (request.header(b"x-duis-message-id") or b"-").decode("ascii", "replace")
            self._inbox.receive(rest[0], message_id, request.body, self._state.clock.now())
            return 200, b"", TEXT
        if method == "GET" and not rest:
            return _json(200, self._inbox.messages(params.get("user_id")))
        return 404, b"unknown inbox path\n", TEXT

    def _status(self) -> dict[str, object]:
        state = self._state
        today = state.clock.now().date()
        return {
            "versions": state.versions.served(today),
            "retired_versions": {
                v: d.isoformat() for v, d in state.versions.retired(today).items()
            },
            "users": len(state.registry),
            "devices": len(state.inventory),
            "certificates": len(state.certstore),
            "certificates_skipped": [
                {"file": str(p), "reason": r} for p, r in state.certstore.skipped
            ],
            "outbox_pending": self._outbox.pending_count(),
            "outbox_dead_letters": self._outbox.dead_letter_count(),
        }

    async def _quarantine(self, method: str, rest: list[str], params: dict[str, str]) -> Answer:
        store = self._ops.screen.quarantine
        if not rest and method == "GET":
            items = await store.list_requests(
                user_id=params.get("user_id"),
                srv=params.get("srv"),
                min_age_seconds=float(params.get("min_age_seconds", "0")),
                state=params.get("state", "held"),  # type: ignore[arg-type]
            )
            return _json(200, [_view(i) for i in items])
        ref = int(rest[0])
        try:
            if len(rest) == 1 and method == "GET":
                item = await store.show(ref)
                return (
                    _json(200, _view(item, True)) if item else _json(404, {"error": "unknown ref"})
                )
            if rest[1:] == ["release"] and method == "POST":
                return _json(200, {"released": ref, "answered": await self._ops.release(ref)})
            if rest[1:] == ["delete"] and method == "POST":
                await self._ops.delete(ref)
                return _json(200, {"deleted": ref})
        except UnknownEventRef:
            return _json(404, {"error": f"no quarantined request {ref}"})
        except NotHeld as exc:
            return _json(409, {"error": str(exc)})
        return 404, b"unknown quarantine path\n", TEXT

    async def _outbox_route(self, method: str, rest: list[str], params: dict[str, str]) -> Answer:
        if rest == ["pending"] and method == "GET":
            return _json(
                200, [_message(m) for m in await self._outbox.pending(params.get("user_id"))]
            )
        if rest == ["dead-letters"] and method == "GET":
            return _json(200, [_message(m) for m in await self._outbox.dead_letters()])
        if len(rest) == 3 and rest[0] == "dead-letters" and rest[2] == "retry" and method == "POST":
            try:
                await self._outbox.retry_dead_letter(rest[1])
            except UnknownMessage:
                return _json(404, {"error": "unknown message"})
            except NotDeadLettered:
                return _json(409, {"error": "not a dead letter"})
            return _json(200, {"retrying": rest[1]})
        return 404, b"unknown outbox path\n", TEXT

    def _thresholds(self, method: str, request: HttpRequest, peer: PeerInfo) -> Answer:
        counters = self._ops.screen.counters
        if not isinstance(counters, MemoryThresholdStore):
            return _json(
                409,
                {
                    "error": "run-time changes need the memory store; restart with "
                    "a new thresholds.rules_file for Redis"
                },
            )
        if method == "GET":
            return _json(200, counters.config)
        if method != "PUT":
            return 405, b"GET or PUT (TOML rules)\n", TEXT
        try:
            rules = decode_threshold_config(request.body)
        except ThresholdConfigError as exc:
            return _json(400, {"error": str(exc)})
        counters.reload(rules)
        entry = {
            "at": self._state.clock.now().isoformat(),
            "from": peer.address,
            "rules": len(rules.rules),
            "attribute_limits": len(rules.attribute_limits),
            "toml_base64": base64.b64encode(request.body).decode(),
        }
        with self._audit.open("ab") as audit:
            audit.write(msgspec.json.encode(entry) + b"\n")
        log.warning(
            "thresholds changed from %s: %d rules, %d attribute limits",
            peer.address,
            len(rules.rules),
            len(rules.attribute_limits),
        )
        return _json(200, {"result": "thresholds updated", "rules": len(rules.rules)})
