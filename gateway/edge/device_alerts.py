"""Device alerts to their Users: the I/O around `gateway.core.device_alerts`.

Two ways an alert reaches the gateway, over either device transport:
- alongside a device's reply (`DeviceReply.alerts`: the embedded simulator's, or the
  estate link's `reply.alerts`): the life cycle hands them over after the job's Service
  Response is stored (`from_reply`), also for a reply no job here waited for;
- on its own, in the estate link's `alert` frame (`from_frame`, the handler of
  `NetworkTransport.on_alert`).

Each alert is routed by the core (recipient = a registered User, alert code, message
id), signed with the DCC's key as a DUIS `DeviceAlertMessage` (I0, ResponseID
device:User:counter) and stored in the outbox under `alert:<device>:<counter>` for the
User's Receive Response URL, from where delivery posts it like every alert.

Version: an alert in the reply to a User's request is written in that request's DUIS
version (as its Service Response is); any other in the newest version served today
(as the gateway's other unsolicited alerts are).

Counted in `duisgw_device_alerts_total{outcome}`: `stored`, `duplicate` (the message id
was stored already), or the refusal reason; a refused alert is logged once, at warning,
with its reason. From a reply, a store that fails is waited out (the job stays held,
as for its response); from an `alert` frame it is tried once, then counted as
`store_unavailable` and logged at error: the link is not held up for it.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import Final

import trio
from cryptography.hazmat.primitives.asymmetric import ec

from gateway.core.answers import Answers
from gateway.core.device_alerts import RefusedAlert, RoutedAlert, route_alert
from gateway.core.estate_link import Alert
from gateway.core.log_fields import log_event
from gateway.core.outcome import Verified
from gateway.core.snapshot import SnapshotHolder
from gateway.core.versions import VersionRegistry
from gateway.edge.metrics import Metrics
from gateway.stores.outbox_sqlite import OutboxStoreError
from mmc.catalogue import Catalogue
from mmc.identifiers import Eui64

log = logging.getLogger("duisgw.device_alerts")

STORE_RETRY_SECONDS: Final = 1.0
NO_VERSION: Final = "no_version_served"
STORE_UNAVAILABLE: Final = "store_unavailable"
INTERNAL_ERROR: Final = "internal_error"

# (user_id, message_id, signed document) -> True if stored now, False if already stored;
# durable on return (Lifecycle.store_alert).
StoreAlert = Callable[[str, str, bytes], Awaitable[bool]]


class DeviceAlerts:
    def __init__(
        self,
        snapshots: SnapshotHolder,
        versions: VersionRegistry,
        answers: Answers,
        store: StoreAlert,
        *,
        metrics: Metrics | None = None,
        device_signing_keys: Mapping[Eui64, ec.EllipticCurvePublicKey] | None = None,
        retry_seconds: float = STORE_RETRY_SECONDS,
    ) -> None:
        self._snapshots = snapshots
        self._versions = versions
        self._answers = answers
        self._store = store
        self._metrics = metrics
        self._keys = device_signing_keys or {}
        self._retry_seconds = retry_seconds

    async def from_reply(self, alerts: tuple[bytes, ...], request: Verified | None) -> None:
        """The alerts a device's reply carried; returns once each is stored or refused."""
        for gbcs in alerts:
            while True:
                try:
                    await self._pass_on(gbcs, None, request)
                    break
                except OutboxStoreError as exc:
                    log.warning(
                        "store unavailable for a device alert (%s); retrying in %gs",
                        exc,
                        self._retry_seconds,
                    )
                    await trio.sleep(self._retry_seconds)
                except Exception:  # our bug: this alert only; the job and the others go on
                    log.exception("device alert from a reply could not be passed on")
                    self._count(INTERNAL_ERROR)
                    break

    async def from_frame(self, alert: Alert) -> None:
        """An estate link `alert` frame; never raises (the link goes on)."""
        try:
            await self._pass_on(alert.gbcs, alert.device_id, None)
        except OutboxStoreError as exc:
            self._count(STORE_UNAVAILABLE)
            log_event(
                log,
                logging.ERROR,
                "device alert not stored",
                "device alert from %(device)s not stored: the outbox is unavailable (%(detail)s)",
                device=alert.device_id,
                detail=str(exc),
            )
        except Exception:
            self._count(INTERNAL_ERROR)
            log.exception("device alert from %s could not be passed on", alert.device_id)

    async def _pass_on(
        self, gbcs: bytes, device_id: Eui64 | None, request: Verified | None
    ) -> None:
        decision = route_alert(
            gbcs,
            self._snapshots.current.users,
            device_id=device_id,
            device_signing_keys=self._keys,
        )
        if isinstance(decision, RefusedAlert):
            self._refused(decision.reason, decision.detail, decision.device_id, decision.recipient)
            return
        catalogue = self._catalogue(decision, request)
        if catalogue is None:
            self._refused(
                NO_VERSION,
                "no DUIS version is served today",
                decision.device_id,
                decision.user_id,
            )
            return
        body = self._answers.device_alert(
            catalogue, decision.alert_code_hex, decision.gbcs, decision.response_id
        )
        stored = await self._store(decision.user_id, decision.message_id, body)
        self._count("stored" if stored else "duplicate")
        log_event(
            log,
            logging.INFO,
            "device alert stored" if stored else "device alert already stored",
            "device alert %(alert_code)s from %(device)s for %(user_id)s (%(message_id)s, "
            "DUIS %(version)s) %(what)s",
            alert_code=decision.alert_code_hex,
            device=decision.device_id,
            user_id=decision.user_id,
            message_id=decision.message_id,
            version=catalogue.version,
            what="stored for delivery" if stored else "was stored already; not stored twice",
        )

    def _catalogue(self, alert: RoutedAlert, request: Verified | None) -> Catalogue | None:
        """The request's version when the alert goes to its originator, else the newest
        version served today."""
        if request is not None and request.header.request_id.originator == alert.user_id:
            return request.route.catalogue
        now = self._answers.now()
        served = self._versions.served(now.date())
        route = self._versions.route(served[-1], now) if served else None
        return route.catalogue if route is not None else None

    def _refused(
        self, reason: str, detail: str, device_id: Eui64 | None, recipient: Eui64 | None
    ) -> None:
        self._count(reason)
        log_event(
            log,
            logging.WARNING,
            "device alert refused",
            "device alert from %(device)s to %(recipient)s not passed on (%(reason)s: %(detail)s)",
            device=device_id,
            recipient=recipient,
            reason=reason,
            detail=detail,
        )

    def _count(self, outcome: str) -> None:
        if self._metrics is not None:
            self._metrics.device_alerts.labels(outcome).inc()
