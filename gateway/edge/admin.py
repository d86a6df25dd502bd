"""The admin listener's routes: health, readiness, metrics, reload, status, outbox,
quarantine (gateway/edge/admin_quarantine.py), thresholds
(gateway/edge/admin_thresholds.py), replay counters (gateway/edge/admin_replay.py),
traffic and trust views (gateway/edge/admin_views.py), Technical Specification tables,
coverage and Install and Leave (gateway/edge/techspec_admin.py), the operator console's
files (gateway/edge/console_files.py), and whatever the composition root mounts under its
own first path segment (the dev inbox, gateway/devkit/inbox.py, when it is enabled).

A separate port from DUIS so it can live on a management network. JSON in and
out (msgspec); the `duisgw quarantine` / `duisgw outbox` commands call it. Who
may call it is decided before these routes (gateway/edge/admin_auth.py); what they
are given is checked by gateway/edge/admin_params.py and refused with 400 and the
reason.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from typing import Final
from urllib.parse import unquote

import msgspec
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from gateway.core.clock import Clock
from gateway.core.log_fields import log_event
from gateway.core.snapshot import Reloaded, ReloadResult, SnapshotHolder
from gateway.core.trust_report import signing_readiness, users_without_signer
from gateway.core.versions import VersionRegistry
from gateway.edge import admin_params as check
from gateway.edge.admin_auth import media_type
from gateway.edge.admin_params import InvalidInput, parse_query
from gateway.edge.admin_quarantine import QuarantineAdmin, decision_from
from gateway.edge.admin_replay import ReplayAdmin
from gateway.edge.admin_thresholds import ThresholdsAdmin
from gateway.edge.admin_views import AdminViews
from gateway.edge.console_files import CONSOLE_PATHS, ConsoleFiles
from gateway.edge.http import HttpRequest
from gateway.edge.quarantine_ops import QuarantineOps
from gateway.edge.server import Answer, PeerInfo
from gateway.edge.techspec_admin import TechspecAdmin
from gateway.stores.outbox import NotDeadLettered, UnknownMessage
from gateway.stores.outbox_sqlite import OutboxStoreError, StoredMessage
from gateway.stores.outbox_store import OutboxStore
from mmc.identifiers import Eui64

log = logging.getLogger("duisgw.admin")

JSON = b"application/json"
TEXT = b"text/plain; charset=utf-8"
XML_TYPES: Final = (b"application/xml", b"text/xml")
# Routes the composition root mounts under a first path segment of their own:
# (method, the path after that segment, query, request) -> answer.
Mount = Callable[[str, list[str], str, HttpRequest], Awaitable[Answer]]


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


def _user(query: str) -> str | None:
    """The optional `user_id` filter, the query's only parameter."""
    params = parse_query(query, ("user_id",))
    return check.user_id(params["user_id"]) if "user_id" in params else None


class AdminApi:
    def __init__(
        self,
        *,
        snapshots: SnapshotHolder,
        versions: VersionRegistry,
        clock: Clock,
        metrics_registry: CollectorRegistry,
        reload: Callable[[], ReloadResult],
        quarantine: QuarantineOps,
        outbox: OutboxStore,
        replay: ReplayAdmin,
        thresholds: ThresholdsAdmin,
        techspec: TechspecAdmin,
        state_dir: Path,
        mounts: Mapping[str, Mount] | None = None,
        dcc_originator: Eui64 | None = None,
    ) -> None:
        self._snapshots = snapshots
        self._versions = versions
        self._clock = clock
        self._metrics_registry = metrics_registry
        self._reload = reload
        self._ops = quarantine
        self._outbox = outbox
        self._state_dir = state_dir
        self._replay = replay
        self._thresholds = thresholds
        self._techspec = techspec
        self._mounts = dict(mounts or {})
        self._quarantine = QuarantineAdmin(quarantine)
        self._views = AdminViews(
            snapshots=snapshots,
            versions=versions,
            clock=clock,
            metrics_registry=metrics_registry,
            outbox=outbox,
            quarantine=quarantine.screen.quarantine,
            dcc_originator=dcc_originator,
        )
        self._console = ConsoleFiles()
        self._dcc_originator = dcc_originator  # signs with OU 89 (gateway/core/trust_report.py)
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
            return 200, generate_latest(self._metrics_registry), CONTENT_TYPE_LATEST.encode()
        path = request.target.partition("?")[0]
        if path in CONSOLE_PATHS:
            return self._console.answer(method, path)
        if parts and parts[0] in self._mounts:
            return await self._mounts[parts[0]](method, parts[1:], query, request)
        if parts[:1] == ["inbox"]:
            return 404, b"the dev inbox is not enabled ([dev_inbox] enabled = true)\n", TEXT
        if parts[:1] != ["admin"]:
            return 404, b"unknown admin path\n", TEXT
        rest = parts[1:]
        if rest[:1] == ["quarantine"]:
            return await self._quarantine.route(
                method, rest[1:], query, request.body, media_type(request), peer.address
            )
        if rest[:1] == ["outbox"]:
            try:
                return await self._outbox_route(
                    method, rest[1:], query, request.body, media_type(request), peer.address
                )
            except OutboxStoreError as exc:  # Redis away: say so, the listener stays up
                return _json(503, {"error": f"outbox unavailable: {exc}"})
        if rest[:1] == ["techspec"]:
            return await self._techspec.route(method, rest[1:], query, request, peer)
        view = await self._views.route(method, rest, query)
        if view is not None:
            return view
        _no_query(query)
        if rest == ["reload"] and method == "POST":
            result = self._reload()
            status = 200 if isinstance(result, Reloaded) else 500
            return _json(status, {"result": result.message})
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

    def _status(self) -> dict[str, object]:
        snapshot = self._snapshots.current
        now = self._clock.now()
        today = now.date()
        missing = users_without_signer(
            signing_readiness(
                snapshot.certstore, snapshot.users, self._versions, now, self._dcc_originator
            )
        )
        return {
            "versions": self._versions.served(today),
            "retired_versions": {
                v: d.isoformat() for v, d in self._versions.retired(today).items()
            },
            "users": len(snapshot.users),
            "devices": len(snapshot.inventory),
            "certificates": len(snapshot.certstore),
            "certificates_skipped": [
                {"file": self._shown_path(p), "reason": r} for p, r in snapshot.certstore.skipped
            ],
            "outbox_pending": self._outbox.pending_count(),
            "outbox_dead_letters": self._outbox.dead_letter_count(),
            # Registered Users whose requests of a served version would all get 403.
            "users_without_signer": missing,
        }

    def _shown_path(self, path: Path) -> str:
        """Relative to the state directory, else the file name: no absolute paths shown."""
        try:
            return str(path.resolve().relative_to(self._state_dir.resolve()))
        except ValueError:
            return path.name

    async def _outbox_route(
        self, method: str, rest: list[str], query: str, body: bytes, media: bytes, peer: str
    ) -> Answer:
        if rest == ["pending"] and method == "GET":
            return _json(200, [_message(m) for m in await self._outbox.pending(_user(query))])
        if rest == ["dead-letters"] and method == "GET":
            return _json(200, [_message(m) for m in await self._outbox.dead_letters(_user(query))])
        _no_query(query)
        operations = {"retry": "retrying", "discard": "discarded"}
        if (
            len(rest) == 3
            and rest[0] == "dead-letters"
            and rest[2] in operations
            and method == "POST"
        ):
            try:
                # Percent-decoded: the console encodes the ID as a path segment.
                message_id = check.message_id(unquote(rest[1]))
                decision = decision_from(body, media, peer)  # optional {"reason": "..."}
                if rest[2] == "retry":
                    await self._outbox.retry_dead_letter(message_id)
                else:
                    await self._outbox.discard_dead_letter(message_id)
            except UnknownMessage:
                return _json(404, {"error": "unknown message"})
            except NotDeadLettered:
                return _json(409, {"error": "not a dead letter"})
            # An operator's decision on a User's message: in the log with who and why.
            log_event(
                log,
                logging.INFO,
                f"dead letter {operations[rest[2]]}",
                "dead letter %(message_id)s %(outcome)s by %(by)s: %(reason)s",
                message_id=message_id,
                outcome=operations[rest[2]],
                by=decision.by,
                reason=decision.reason or "(no reason given)",
            )
            return _json(200, {operations[rest[2]]: message_id})
        return 404, b"unknown outbox path\n", TEXT
