"""The DUIS listener's HTTP handler: endpoint, method and media type, then the pipeline."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Final

import trio

from gateway.core.log_fields import log_event
from gateway.edge.http import HttpRequest
from gateway.edge.metrics import Metrics
from gateway.edge.pipeline import RequestPipeline
from gateway.edge.server import PeerInfo
from gateway.edge.tls import client_identity, user_ids_for
from mmc.catalogue import Endpoint

log = logging.getLogger("duisgw")

ENDPOINTS: Final = {
    "/api/v1/serviceS": Endpoint.SEND,
    "/api/v1/serviceT": Endpoint.TRANSFORM,
    "/api/v1/serviceD": Endpoint.NON_DEVICE,
}
XML_CONTENT_TYPES: Final = (b"application/xml", b"text/xml")


class DuisHandler:
    """HTTP request -> endpoint -> pipeline -> HTTP answer.

    `identities`: with mutual TLS, client certificate CN -> the User IDs it may send
    for (`[tls] identities`); None without TLS.
    """

    def __init__(
        self,
        pipeline: RequestPipeline,
        metrics: Metrics,
        identities: Mapping[str, tuple[str, ...]] | None,
    ) -> None:
        self._pipeline = pipeline
        self._metrics = metrics
        self._identities = identities
        # Label children bound once, outside the hot path (bounded: one per endpoint).
        self._latency = {e: metrics.latency.labels(e.value) for e in ENDPOINTS.values()}

    async def __call__(self, request: HttpRequest, peer: PeerInfo) -> tuple[int, bytes, bytes]:
        endpoint = ENDPOINTS.get(request.target.split("?", 1)[0])
        if endpoint is None:
            return self._http_error(404, f"no DUIS endpoint at {request.target[:100]}")
        if request.method != "POST":
            return self._http_error(405, "DUIS endpoints accept POST only")
        content_type = (request.header(b"content-type") or b"").split(b";", 1)[0].strip().lower()
        if content_type not in XML_CONTENT_TYPES:
            return self._http_error(415, "Content-Type must be application/xml")
        speaks_for = None
        if self._identities is not None:
            identity = client_identity(peer.client_certificate_der)
            speaks_for = user_ids_for(identity, self._identities) if identity else frozenset()
        started = trio.current_time()
        # An unexpected exception goes to the connection's crash boundary (edge/server.py).
        outcome = await self._pipeline.handle(endpoint, request.body, speaks_for)
        self._latency[endpoint].observe(trio.current_time() - started)
        return outcome.status, outcome.body, outcome.content_type

    def _http_error(self, status: int, reason: str) -> tuple[int, bytes, bytes]:
        self._metrics.http_errors.labels(str(status)).inc()
        log_event(
            log,
            logging.INFO,
            "HTTP refusal",
            "HTTP %(status)d: %(reason)s",
            status=status,
            reason=reason,
        )
        return status, reason.encode() + b"\n", b"text/plain; charset=utf-8"
