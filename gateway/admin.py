"""The admin listener's routes: health, readiness, metrics, reload, quarantine, outbox,
thresholds (gateway/admin_thresholds.py), replay counters (gateway/admin_replay.py), and
the dev inbox (gateway/inbox.py) when it is enabled.

A separate port from DUIS so it can live on a management network. JSON in and
out (msgspec); the `duisgw quarantine` / `duisgw outbox` commands call it. Who
may call it is decided before these routes (gateway/admin_auth.py); what they
are given is checked by gateway/admin_params.py and refused with 400 and the
reason.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Final, get_args

import msgspec
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from gateway import admin_params as check
from gateway.admin_auth import media_type
from gateway.admin_params import InvalidInput, parse_query
from gateway.admin_replay import ReplayAdmin
from gateway.admin_thresholds import ThresholdsAdmin
from gateway.http import HttpRequest
from gateway.inbox import Inbox, MessageTooLarge
from gateway.log_fields import log_event
from gateway.outbox import NotDeadLettered, Outbox, StoredMessage, UnknownMessage
from gateway.quarantine_ops import QuarantineOps
from gateway.server import PeerInfo
from gateway.state import GatewayState
from thresholds.quarantine import (
    MAX_LIST_ROWS,
    NotHeld,
    QuarantinedRequest,
    QuarantineState,
    UnknownEventRef,
)

log = logging.getLogger("duisgw.admin")

JSON = b"application/json"
TEXT = b"text/plain; charset=utf-8"
Answer = tuple[int, bytes, bytes]
XML_TYPES: Final = (b"application/xml", b"text/xml")
MAX_MIN_AGE_SECONDS: Final = 100 * 366 * 86_400.0  # min_age_seconds: a century at most
QUARANTINE_QUERY: Final = ("user_id", "srv", "min_age_seconds", "state", "after_ref", "limit")


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


def _no_query(query: str) -> None:
    parse_query(query, ())


class AdminApi:
    def __init__(
        self,
        state: GatewayState,
        reload: Callable[[], str],
        quarantine: QuarantineOps,
        outbox: Outbox,
        replay: ReplayAdmin,
        thresholds: ThresholdsAdmin,
        *,
        state_dir: Path,
        inbox: Inbox | None = None,
    ) -> None:
        self._state = state
        self._reload = reload
        self._ops = quarantine
        self._outbox = outbox
        self._state_dir = state_dir
        self._replay = replay
        self._thresholds = thresholds
        self._inbox = inbox
        self.ready = False

    async def __call__(self, request: HttpRequest, peer: PeerInfo) -> Answer:
        path, _, query = request.target.partition("?")
        parts = [p for p in path.split("/") if p]
        try:
            return await self._route(request.method, parts, query, request, peer)
        except InvalidInput as exc:
            log_event(
                log,
                logging.INFO,
                "admin refusal",
                "admin 400 from %(peer)s: %(method)s %(path)s: %(reason)s",
                status=400,
                peer=peer.address,
                method=request.method,
                path=path[:100],
                reason=str(exc),
            )
            return _json(400, {"error": str(exc)})

    async def _route(
        self,
        method: str,
        parts: list[str],
        query: str,
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
            return await self._inbox_route(method, parts[1:], query, request)
        if parts[:1] != ["admin"]:
            return 404, b"unknown admin path\n", TEXT
        rest = parts[1:]
        if rest[:1] == ["quarantine"]:
            return await self._quarantine(method, rest[1:], query)
        if rest[:1] == ["outbox"]:
            return await self._outbox_route(method, rest[1:], query)
        _no_query(query)
        if rest == ["reload"] and method == "POST":
            message = self._reload()
            return _json(200 if message.startswith("reloaded") else 500, {"result": message})
        if rest == ["status"]:
            return _json(200, self._status())
        if rest[:1] == ["thresholds"]:
            return await self._thresholds.route(
                method, rest[1:], request.body, media_type(request), peer.address
            )
        if rest[:1] == ["replay"]:
            return await self._replay.route(
                method, rest[1:], request.body, media_type(request), peer.address
            )
        return 404, b"unknown admin path\n", TEXT

    async def _inbox_route(
        self, method: str, rest: list[str], query: str, request: HttpRequest
    ) -> Answer:
        if self._inbox is None:
            return 404, b"the dev inbox is not enabled ([dev_inbox] enabled = true)\n", TEXT
        if method == "POST" and len(rest) == 1:
            _no_query(query)
            if media_type(request) not in XML_TYPES:
                return _json(415, {"error": "the dev inbox takes application/xml"})
            user_id = check.user_id(rest[0])
            message_id = (request.header(b"x-duis-message-id") or b"-").decode("ascii", "replace")
            try:
                await self._inbox.receive(
                    user_id, check.message_id(message_id), request.body, self._state.clock.now()
                )
            except MessageTooLarge as exc:
                log.info("dev inbox refused a message for %s: %s", user_id, exc)
                return _json(413, {"error": str(exc)})
            return 200, b"", TEXT
        if method == "GET" and not rest:
            params = parse_query(query, ("user_id",))
            user = check.user_id(params["user_id"]) if "user_id" in params else None
            return _json(200, self._inbox.messages(user, self._state.clock.now()))
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
                {"file": self._shown_path(p), "reason": r} for p, r in state.certstore.skipped
            ],
            "outbox_pending": self._outbox.pending_count(),
            "outbox_dead_letters": self._outbox.dead_letter_count(),
        }

    def _shown_path(self, path: Path) -> str:
        """Relative to the state directory, else the file name: no absolute paths shown."""
        try:
            return str(path.resolve().relative_to(self._state_dir.resolve()))
        except ValueError:
            return path.name

    async def _quarantine(self, method: str, rest: list[str], query: str) -> Answer:
        store = self._ops.screen.quarantine
        if not rest and method == "GET":
            params = parse_query(query, QUARANTINE_QUERY)
            user, srv = params.get("user_id"), params.get("srv")
            min_age = params.get("min_age_seconds", "0")
            after_ref = params.get("after_ref", "0")
            limit = params.get("limit", str(MAX_LIST_ROWS))
            items = await store.list_requests(
                user_id=None if user is None else check.user_id(user),
                srv=None if srv is None else check.srv(srv),
                min_age_seconds=check.seconds(min_age, "min_age_seconds", MAX_MIN_AGE_SECONDS),
                state=_quarantine_state(params.get("state", "held")),
                after_ref=check.integer(after_ref, "after_ref", 0, check.SQLITE_INT64_MAX),
                limit=check.integer(limit, "limit", 1, MAX_LIST_ROWS),
            )
            return _json(200, [_view(i) for i in items])
        if not rest:
            return 405, b"GET the list; POST .../REF/release or .../REF/delete\n", TEXT
        _no_query(query)
        ref = check.event_ref(rest[0])
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

    async def _outbox_route(self, method: str, rest: list[str], query: str) -> Answer:
        if rest == ["pending"] and method == "GET":
            params = parse_query(query, ("user_id",))
            user = check.user_id(params["user_id"]) if "user_id" in params else None
            return _json(200, [_message(m) for m in await self._outbox.pending(user)])
        _no_query(query)
        if rest == ["dead-letters"] and method == "GET":
            return _json(200, [_message(m) for m in await self._outbox.dead_letters()])
        if len(rest) == 3 and rest[0] == "dead-letters" and rest[2] == "retry" and method == "POST":
            try:
                await self._outbox.retry_dead_letter(check.message_id(rest[1]))
            except UnknownMessage:
                return _json(404, {"error": "unknown message"})
            except NotDeadLettered:
                return _json(409, {"error": "not a dead letter"})
            return _json(200, {"retrying": rest[1]})
        return 404, b"unknown outbox path\n", TEXT


def _quarantine_state(text: str) -> QuarantineState:
    states: tuple[QuarantineState, ...] = get_args(QuarantineState)
    for state in states:
        if state == text:
            return state
    raise InvalidInput(f"state must be one of {', '.join(states)}, not {text[:40]!r}")
