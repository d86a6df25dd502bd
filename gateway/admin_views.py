"""Read-only admin views for the operator console (and `duisgw trust` / `duisgw traffic`).

GET /admin/traffic              cumulative traffic counts, latency buckets, outbox
                                and quarantine depth (gateway/traffic_summary.py)
GET /admin/trust/certificates   every Organisation certificate: identity, validity,
                                trust, revocation (gateway/trust_report.py)
GET /admin/trust/signers        every User's signing certificate per served version
                                (`?missing=true`: only Users some version refuses)
"""

from __future__ import annotations

from typing import Final

import msgspec

from gateway.admin_params import InvalidInput, parse_query
from gateway.outbox import Outbox
from gateway.state import GatewayState
from gateway.traffic_summary import TrafficSummary, summarise
from gateway.trust_report import certificate_rows, signing_readiness, users_without_signer
from thresholds.quarantine import QuarantineStore

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
    def __init__(self, state: GatewayState, outbox: Outbox, quarantine: QuarantineStore) -> None:
        self._state = state
        self._outbox = outbox
        self._quarantine = quarantine

    async def route(self, method: str, parts: list[str], query: str) -> Answer | None:
        """`parts`: the path after /admin; None when the path is not one of these views."""
        if method != "GET" or parts[:1] not in (["traffic"], ["trust"]):
            return None
        state = self._state
        if parts == ["traffic"]:
            parse_query(query, ())
            view = TrafficView(
                traffic=summarise(state.metrics.registry, state.clock.monotonic()),
                outbox_pending=self._outbox.pending_count(),
                outbox_dead_letters=self._outbox.dead_letter_count(),
                quarantine_held=await self._quarantine.count("held"),
            )
            return _json(200, view)
        if parts == ["trust", "certificates"]:
            parse_query(query, ())
            return _json(200, certificate_rows(state.certstore, state.clock.now()))
        if parts == ["trust", "signers"]:
            missing = _boolean(parse_query(query, ("missing",)).get("missing", "false"))
            report = signing_readiness(
                state.certstore, state.registry, state.versions, state.clock.now()
            )
            return _json(200, users_without_signer(report) if missing else report)
        return None


def _boolean(text: str) -> bool:
    if text not in _BOOLEANS:
        raise InvalidInput(f"missing must be true or false, not {text[:40]!r}")
    return _BOOLEANS[text]
