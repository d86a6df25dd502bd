"""The admin listener: health, readiness, metrics, reload (and, as they land, quarantine
and dead-letter views). Separate port from DUIS so it can stay on a management network."""

from __future__ import annotations

from collections.abc import Callable

import msgspec
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from gateway.http import HttpRequest
from gateway.server import PeerInfo
from gateway.state import GatewayState

JSON = b"application/json"
TEXT = b"text/plain; charset=utf-8"


class AdminApi:
    def __init__(self, state: GatewayState, reload: Callable[[], str]) -> None:
        self._state = state
        self._reload = reload
        self.ready = False

    async def __call__(self, request: HttpRequest, peer: PeerInfo) -> tuple[int, bytes, bytes]:
        path = request.target.split("?", 1)[0]
        if path == "/healthz":
            return 200, b"ok\n", TEXT
        if path == "/readyz":
            return (200, b"ready\n", TEXT) if self.ready else (503, b"not ready\n", TEXT)
        if path == "/metrics":
            return 200, generate_latest(self._state.metrics.registry), CONTENT_TYPE_LATEST.encode()
        if path == "/admin/reload":
            if request.method != "POST":
                return 405, b"POST to reload\n", TEXT
            message = self._reload()
            status = 200 if message.startswith("reloaded") else 500
            return status, msgspec.json.encode({"result": message}), JSON
        if path == "/admin/status":
            state = self._state
            return 200, msgspec.json.encode({
                "versions": state.versions.served(),
                "users": len(state.registry),
                "devices": len(state.inventory),
                "certificates_skipped": [
                    {"file": str(p), "reason": r} for p, r in state.certstore.skipped
                ],
            }), JSON
        return 404, b"unknown admin path\n", TEXT
