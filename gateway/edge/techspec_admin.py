"""Admin routes for the techspec tables, the coverage database and their reports.

Mounted under /admin/techspec by the admin API (JSON out, like the rest of it):

    GET  tables | coverage            the revision in force (?document=1 adds the text)
    PUT  tables | coverage            replace it (TOML, or JSON with Content-Type
                                      application/json or ?format=json); ?reason= is
                                      audited with the caller's address
    GET  tables/audit | coverage/audit   every revision, newest first
    GET  report[?warn_within_days=N]  installed devices whose version lost (or is
                                      losing) its Maintenance Validity Period
    GET  install-leave                hubs left without SM WAN, most urgent first
    POST install-leave/HUB/close?reason=commissioned|hub_returned|operator

A file the core cannot read gets 400 with the reason and changes nothing.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Final, get_args

import msgspec

from gateway.core.techspec.coverage import CoverageError
from gateway.core.techspec.estate import Estate
from gateway.core.techspec.install_leave import CloseReason, InstallLeaveError
from gateway.core.techspec.tables import TablesError
from gateway.edge.http import HttpRequest
from gateway.edge.server import PeerInfo
from gateway.edge.techspec_service import TechspecService
from gateway.stores.techspec_store import DocumentFormat, StaleCase, TableKind, TableRevision

log = logging.getLogger("duisgw.admin")

JSON: Final = b"application/json"
TEXT: Final = b"text/plain; charset=utf-8"
Answer = tuple[int, bytes, bytes]
_KINDS: Final[dict[str, TableKind]] = {"tables": "techspec", "coverage": "coverage"}
_CLOSE_REASONS: Final[dict[str, CloseReason]] = {r: r for r in get_args(CloseReason)}


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
        self,
        method: str,
        rest: list[str],
        params: dict[str, str],
        request: HttpRequest,
        peer: PeerInfo,
    ) -> Answer:
        if rest[:1] and rest[0] in _KINDS:
            return await self._table(method, _KINDS[rest[0]], rest[1:], params, request, peer)
        if rest == ["report"] and method == "GET":
            days = params.get("warn_within_days")
            rows = self._service.maintenance_report(
                self._estate(), warn_within_days=None if days is None else int(days)
            )
            return _json(200, rows)
        if rest == ["install-leave"] and method == "GET":
            return _json(200, await self._service.install_leave_report())
        if len(rest) == 3 and rest[0] == "install-leave" and rest[2] == "close":
            return await self._close(method, rest[1], params.get("reason", "operator"), peer)
        return 404, b"unknown techspec path\n", TEXT

    async def _table(
        self,
        method: str,
        kind: TableKind,
        rest: list[str],
        params: dict[str, str],
        request: HttpRequest,
        peer: PeerInfo,
    ) -> Answer:
        if rest == ["audit"] and method == "GET":
            return _json(200, [_view(r) for r in await self._service.audit(kind)])
        if rest:
            return 404, b"unknown techspec path\n", TEXT
        if method == "GET":
            current = await self._service.current(kind)
            if current is None:
                return _json(404, {"error": f"no {kind} loaded"})
            return _json(200, _view(current, with_document=params.get("document") == "1"))
        if method != "PUT":
            return 405, b"GET or PUT\n", TEXT
        try:
            fmt = _format(request, params)
            loaded = await self._service.replace(
                kind, request.body, fmt, actor=peer.address, reason=params.get("reason", "")
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
                "alerts": loaded.alerts,
            },
        )

    async def _close(self, method: str, hub_id: str, reason: str, peer: PeerInfo) -> Answer:
        if method != "POST":
            return 405, b"POST\n", TEXT
        if reason not in get_args(CloseReason):
            return _json(
                400, {"error": f"reason must be one of {', '.join(get_args(CloseReason))}"}
            )
        try:
            case = await self._service.close_case(hub_id.upper(), reason)  # type: ignore[arg-type]
        except InstallLeaveError as exc:
            status = 404 if "no case" in str(exc) else 409
            return _json(status, {"error": str(exc)})
        except StaleCase as exc:
            return _json(409, {"error": str(exc)})
        log.warning(
            "install and leave case of hub %s closed by %s (%s)", hub_id, peer.address, reason
        )
        return _json(200, {"hub_id": case.hub_id, "state": case.state})


def _format(request: HttpRequest, params: dict[str, str]) -> DocumentFormat:
    wanted = params.get("format")
    if wanted is None:
        content_type = (request.header(b"content-type") or b"").split(b";")[0].strip()
        wanted = "json" if content_type == b"application/json" else "toml"
    if wanted not in ("toml", "json"):
        raise ValueError("format must be toml or json")
    return "json" if wanted == "json" else "toml"
