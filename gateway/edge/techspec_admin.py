"""Admin routes for the techspec tables, the coverage database and their reports.

Mounted under /admin/techspec by the admin API, behind its token like every admin route
(JSON out; the `duisgw techspec` commands call them):

    GET  tables | coverage               the revision in force (?document=1 adds the text)
    PUT  tables | coverage               replace it: TOML (Content-Type application/toml)
                                         or JSON (application/json); ?reason= and ?by=
                                         are audited with the caller's address
    GET  tables/audit | coverage/audit   every revision, newest first (?limit=)
    GET  report[?warn_within_days=N]     installed devices whose version lost (or is
                                         losing) its Maintenance Validity Period
    GET  install-leave                   hubs left without SM WAN, most urgent first
    GET  install-leave/HUB               the hub's case and every state it passed through
    POST install-leave/HUB/close?reason=commissioned|hub_returned|operator

A file the core cannot read gets 400 with the reason and changes nothing; so does any
query parameter the route does not take (gateway/edge/admin_params.py).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Final, get_args

import msgspec

from gateway.core.techspec.coverage import CoverageError
from gateway.core.techspec.estate import Estate
from gateway.core.techspec.install_leave import CloseReason, InstallLeaveCase, InstallLeaveError
from gateway.core.techspec.report import MAX_WARN_WITHIN_DAYS
from gateway.core.techspec.tables import TablesError
from gateway.edge import admin_params as check
from gateway.edge.admin_auth import media_type
from gateway.edge.admin_params import InvalidInput, parse_query
from gateway.edge.http import HttpRequest
from gateway.edge.server import PeerInfo
from gateway.edge.techspec_service import TechspecService
from gateway.stores.techspec_store import (
    MAX_AUDIT_ROWS,
    CaseEvent,
    DocumentFormat,
    StaleCase,
    TableKind,
    TableRevision,
)

log = logging.getLogger("duisgw.admin")

JSON: Final = b"application/json"
TEXT: Final = b"text/plain; charset=utf-8"
Answer = tuple[int, bytes, bytes]
_KINDS: Final[dict[str, TableKind]] = {"tables": "techspec", "coverage": "coverage"}
_FORMATS: Final[dict[bytes, DocumentFormat]] = {
    b"application/toml": "toml",
    b"application/json": "json",
}
_CLOSE_REASONS: Final[tuple[CloseReason, ...]] = get_args(CloseReason)


class RevisionView(msgspec.Struct, frozen=True, kw_only=True):
    kind: str
    revision: int
    format: str
    loaded_at: str
    actor: str
    reason: str
    summary: str
    sha256: str
    size_bytes: int
    document: str | None = None


class CaseView(msgspec.Struct, frozen=True, kw_only=True):
    case: InstallLeaveCase
    history: list[CaseEvent]


def _view(revision: TableRevision, *, with_document: bool = False) -> RevisionView:
    return RevisionView(
        kind=revision.kind,
        revision=revision.revision,
        format=revision.format,
        loaded_at=revision.loaded_at.isoformat(),
        actor=revision.actor,
        reason=revision.reason,
        summary=revision.summary,
        sha256=revision.sha256,
        size_bytes=revision.size_bytes,
        document=revision.document.decode("utf-8", "replace") if with_document else None,
    )


def _json(status: int, value: object) -> Answer:
    return status, msgspec.json.encode(value), JSON


class TechspecAdmin:
    def __init__(self, service: TechspecService, estate: Callable[[], Estate]) -> None:
        self._service = service
        self._estate = estate  # the inventory in force (a reload swaps it)

    async def route(
        self, method: str, rest: list[str], query: str, request: HttpRequest, peer: PeerInfo
    ) -> Answer:
        """`rest`: the path after /admin/techspec. InvalidInput: 400 (the admin API's)."""
        if rest[:1] and rest[0] in _KINDS:
            return await self._table(method, _KINDS[rest[0]], rest[1:], query, request, peer)
        if rest == ["report"] and method == "GET":
            params = parse_query(query, ("warn_within_days",))
            days = params.get("warn_within_days")
            rows = self._service.maintenance_report(
                self._estate(),
                warn_within_days=None
                if days is None
                else check.integer(days, "warn_within_days", 0, MAX_WARN_WITHIN_DAYS),
            )
            return _json(200, rows)
        if rest[:1] == ["install-leave"]:
            return await self._install_leave(method, rest[1:], query, peer)
        return _json(404, {"error": "unknown techspec path"})

    async def _table(
        self,
        method: str,
        kind: TableKind,
        rest: list[str],
        query: str,
        request: HttpRequest,
        peer: PeerInfo,
    ) -> Answer:
        if rest == ["audit"] and method == "GET":
            params = parse_query(query, ("limit",))
            limit_text = params.get("limit", str(MAX_AUDIT_ROWS))
            limit = check.integer(limit_text, "limit", 1, MAX_AUDIT_ROWS)
            return _json(200, [_view(r) for r in await self._service.audit(kind, limit=limit)])
        if rest:
            return _json(404, {"error": "unknown techspec path"})
        if method == "GET":
            params = parse_query(query, ("document",))
            with_document = _flag(params.get("document", "0"), "document")
            current = await self._service.current(kind)
            if current is None:
                return _json(404, {"error": f"no {kind} loaded"})
            return _json(200, _view(current, with_document=with_document))
        if method != "PUT":
            return 405, b"GET or PUT\n", TEXT
        params = parse_query(query, ("reason", "by"))
        fmt = _FORMATS.get(media_type(request))
        if fmt is None:
            log.info("%s from %s refused: no TOML or JSON Content-Type", kind, peer.address)
            return _json(415, {"error": "PUT the file as application/toml or application/json"})
        by = params.get("by")
        actor = peer.address if not by else f"{by} ({peer.address})"
        try:
            loaded = await self._service.replace(
                kind, request.body, fmt, actor=actor, reason=params.get("reason", "")
            )
        except (TablesError, CoverageError, ValueError) as exc:
            log.info("%s from %s refused: %s", kind, peer.address, exc)
            return _json(400, {"error": str(exc)})
        return _json(
            200,
            {
                "revision": loaded.revision.revision,
                "summary": loaded.revision.summary,
                "warnings": loaded.warnings,
                "hubs_reached": loaded.hubs_reached,
                "alerts_sent": loaded.alerts_sent,
            },
        )

    async def _install_leave(
        self, method: str, rest: list[str], query: str, peer: PeerInfo
    ) -> Answer:
        if not rest and method == "GET":
            parse_query(query, ())
            return _json(200, await self._service.install_leave_report())
        if not rest or len(rest) > 2 or rest[1:] not in ([], ["close"]):
            return _json(404, {"error": "unknown install-leave path"})
        hub_id = check.device_id(rest[0])
        if len(rest) == 1:
            if method != "GET":
                return 405, b"GET\n", TEXT
            parse_query(query, ())
            case, history = await self._service.case(hub_id)
            if case is None:
                return _json(404, {"error": f"no Install and Leave case for hub {hub_id}"})
            return _json(200, CaseView(case=case, history=history))
        if method != "POST":
            return 405, b"POST\n", TEXT
        reason = _close_reason(parse_query(query, ("reason",)).get("reason", "operator"))
        try:
            case = await self._service.close_case(hub_id, reason)
        except InstallLeaveError as exc:
            if (await self._service.case(hub_id))[0] is None:
                return _json(404, {"error": f"no Install and Leave case for hub {hub_id}"})
            return _json(409, {"error": str(exc)})  # closed already
        except StaleCase as exc:
            return _json(409, {"error": str(exc)})
        log.warning(
            "install and leave case of hub %s closed by %s (%s)", hub_id, peer.address, reason
        )
        return _json(200, {"hub_id": case.hub_id, "state": case.state})


def _flag(text: str, name: str) -> bool:
    if text not in ("0", "1"):
        raise InvalidInput(f"{name} must be 0 or 1")
    return text == "1"


def _close_reason(text: str) -> CloseReason:
    for reason in _CLOSE_REASONS:
        if reason == text:
            return reason
    raise InvalidInput(f"reason must be one of {', '.join(_CLOSE_REASONS)}")
