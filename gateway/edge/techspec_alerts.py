"""The SM WAN available alert, on its way to the supplier: built, signed, put in the outbox.

The techspec service offers each alert it owes (a coverage update reached a hub left
without SM WAN) to `WanAlertSender`; the case is marked "alert sent" only once the
sender returns True, i.e. once the signed alert is durable in the outbox, from where
delivery posts it to the User's Receive Response URL like every other alert.

The alert is built under the DUIS version the supplier used for its 8.14.2 notification
(recorded in the case), or the newest version served when that one is not served any
more. Its message id is derived from the hub and the moment coverage arrived, so an
alert offered twice (a restart between storing it and marking the case) is stored once.

DUIS publishes no DCCAlertCode for this alert that we could check: until
`techspec.wan_available_alert` names the codes, nothing is sent (the sender returns False
and the Install and Leave report shows the alert as owed).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

from gateway.core.clock import Clock
from gateway.core.signing import ResponseSigner
from gateway.core.techspec.alerts import (
    AlertCodeError,
    WanAlertCodes,
    check_alert_code,
    wan_available_alert,
)
from gateway.core.techspec.install_leave import WanAvailableAlert
from gateway.core.versions import VersionRegistry, VersionRoute
from mmc.catalogue import load_catalogue

log = logging.getLogger("duisgw.techspec")

# (user_id, message_id, signed document) -> durable in the outbox on return
DeliverAlert = Callable[[str, str, bytes], Awaitable[None]]


def check_alert_codes(versions: VersionRegistry, codes: WanAlertCodes) -> None:
    """At start: AlertCodeError unless every configured version defines the DCCAlertCode."""
    for version in versions.xsd_files():  # every configured version, retired or not
        check_alert_code(load_catalogue(version), codes)


class WanAlertSender:
    def __init__(
        self,
        versions: VersionRegistry,
        signer: ResponseSigner,
        clock: Clock,
        deliver: DeliverAlert,
        codes: WanAlertCodes,
    ) -> None:
        self._versions = versions
        self._signer = signer
        self._clock = clock
        self._deliver = deliver
        self._codes = codes

    async def __call__(self, alert: WanAvailableAlert) -> bool:
        """True once the signed alert is in the outbox; False when it cannot be built."""
        if not self._codes.configured:
            log.info(
                "SM WAN reached hub %s: no alert to %s (techspec.wan_available_alert unset)",
                alert.hub_id,
                alert.user_id,
            )
            return False
        route = self._route(alert.duis_version)
        if route is None:
            log.error("no DUIS version served for the alert about hub %s", alert.hub_id)
            return False
        now = self._clock.now()
        try:
            document = wan_available_alert(route.catalogue, alert, self._codes, now)
        except AlertCodeError as exc:  # checked at start for every version; kept for safety
            log.error("SM WAN available alert for hub %s not built: %s", alert.hub_id, exc)
            return False
        message_id = f"{alert.hub_id}:wan-available:{int(alert.available_at.timestamp())}"
        await self._deliver(alert.user_id, message_id, self._signer.sign(document))
        log.info(
            "SM WAN available alert for hub %s stored for %s (DUIS %s)",
            alert.hub_id,
            alert.user_id,
            route.version,
        )
        return True

    def _route(self, version: str | None) -> VersionRoute | None:
        now = self._clock.now()
        if version is not None and (route := self._versions.route(version, now)) is not None:
            return route
        served = self._versions.served(now.date())
        return self._versions.route(served[-1], now) if served else None
