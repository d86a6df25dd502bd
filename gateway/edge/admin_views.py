"""Read-only admin views for the operator console (and `duisgw trust` / `duisgw traffic`).

GET /admin/traffic              cumulative traffic counts, latency buckets, outbox
                                and quarantine depth (gateway/edge/traffic_summary.py)
GET /admin/trust/certificates   every Organisation certificate: identity, validity,
                                trust, revocation (gateway/core/trust_report.py)
GET /admin/trust/signers        every User's signing certificate per served version
                                (`?missing=true`: only Users some version refuses)
"""

from __future__ import annotations

from typing import Final

import msgspec
from prometheus_client import CollectorRegistry

from gateway.core.clock import Clock
from gateway.core.snapshot import SnapshotHolder
from gateway.core.trust_report import certificate_rows, signing_readiness, users_without_signer
from gateway.core.versions import VersionRegistry
from gateway.edge.admin_params import InvalidInput, parse_query
from gateway.edge.traffic_summary import TrafficSummary, summarise
from gateway.stores.outbox_store import OutboxStore
from gateway.stores.quarantine import QuarantineStore
from mmc.identifiers import Eui64

JSON: Final = b"application/json"
Answer = tuple[int, bytes, bytes]
_BOOLEANS: Final = {"true": True, "false": False}


class TrafficView(msgspec.Struct, frozen=True, kw_only=True):
    traffic: TrafficSummary
    outbox_pending: int
    outbox_dead_letters: int
    quarantine_held: int


def _json(status: int, value: object) -> Answer:
    return status, msgspec.json.encode(value), JSON


class AdminViews:
    def __init__(
        self,
        *,
        snapshots: SnapshotHolder,
        versions: VersionRegistry,
        clock: Clock,
        metrics_registry: CollectorRegistry,
        outbox: OutboxStore,
        quarantine: QuarantineStore,
        dcc_originator: Eui64 | None = None,
    ) -> None:
        self._snapshots = snapshots
        self._versions = versions
        self._clock = clock
        self._metrics_registry = metrics_registry
        self._outbox = outbox
        self._quarantine = quarantine
        self._dcc_originator = dcc_originator  # signs with OU 89 (gateway/core/trust_report.py)

    async def route(self, method: str, parts: list[str], query: str) -> Answer | None:
        """`parts`: the path after /admin; None when the path is not one of these views."""
        if method != "GET" or parts[:1] not in (["traffic"], ["trust"]):
            return None
        if parts == ["traffic"]:
            parse_query(query, ())
            view = TrafficView(
                traffic=summarise(self._metrics_registry, self._clock.monotonic()),
                outbox_pending=self._outbox.pending_count(),
                outbox_dead_letters=self._outbox.dead_letter_count(),
                quarantine_held=await self._quarantine.count("held"),
            )
            return _json(200, view)
        snapshot = self._snapshots.current  # taken once: one consistent set
        if parts == ["trust", "certificates"]:
            parse_query(query, ())
            return _json(200, certificate_rows(snapshot.certstore, self._clock.now()))
        if parts == ["trust", "signers"]:
            missing = _boolean(parse_query(query, ("missing",)).get("missing", "false"))
            report = signing_readiness(
                snapshot.certstore,
                snapshot.users,
                self._versions,
                self._clock.now(),
                self._dcc_originator,
            )
            return _json(200, users_without_signer(report) if missing else report)
        return None


def _boolean(text: str) -> bool:
    if text not in _BOOLEANS:
        raise InvalidInput(f"missing must be true or false, not {text[:40]!r}")
    return _BOOLEANS[text]
