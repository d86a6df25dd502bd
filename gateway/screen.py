"""The thresholds stage: count the request per User ID, hold it if a threshold says so.

A held request is stored durably (thresholds/quarantine.py) before anyone is
told; then the User gets a signed DCC Alert AD1 with QuarantinedRequest, valid
for the request's DUIS version, and the HTTP exchange gets an I99: the request
was received and is held, and its fate follows asynchronously (release or
delete). A warning only notifies; the request goes on.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

from gateway.outcome import Outcome, Verified
from gateway.state import GatewayState
from mmc import responses
from thresholds.engine import Action
from thresholds.memory import MemoryThresholdStore
from thresholds.quarantine import QuarantineItem, QuarantineStore

log = logging.getLogger("duisgw.thresholds")

# (User ID, signed alert document) -> returns once the alert is durably queued.
Notify = Callable[[str, bytes], Awaitable[None]]


class ThresholdScreen:
    def __init__(
        self,
        state: GatewayState,
        counters: MemoryThresholdStore,
        quarantine: QuarantineStore,
        notify: Notify,
    ) -> None:
        self._state = state
        self._counters = counters
        self._quarantine = quarantine
        self._notify = notify

    async def screen(self, request: Verified) -> Outcome | None:
        """None to carry on; an Outcome (I99) when the request was quarantined."""
        header = request.header
        user_id = header.request_id.originator
        decision = self._counters.check_and_count(
            user_id, request.srv.variant, self._state.clock.now().timestamp(),
            request.facts.attributes,
        )
        if decision.action is Action.ALLOW:
            return None
        metrics = self._state.metrics
        if decision.action is Action.WARN:
            for hit in decision.warnings:
                if hit.crossed:
                    metrics.threshold_warnings.inc()
                    log.warning("User Warning Threshold crossed user_id=%s srv=%s count=%d "
                                "limit=%d window=%ds", user_id, request.srv.variant, hit.count,
                                hit.rule.limit, hit.rule.window_seconds)
            return None
        assert decision.breach is not None
        now = self._state.clock.now()
        event_ref = await self._quarantine.hold(
            QuarantineItem(
                user_id=user_id,
                request_id=str(header.request_id),
                srv=request.srv.variant,
                duis_version=request.route.version,
                breach=decision.breach,
                held_at=now,
                raw_request=request.raw,
            )
        )
        metrics.quarantined.labels(decision.breach).inc()
        log.warning("quarantined request_id=%s breach=%s ref=%d", header.request_id,
                    decision.breach, event_ref)
        alert = responses.dcc_alert(
            request.route.catalogue,
            "AD1",
            responses.quarantined_request(decision.breach, header.request_id, event_ref),
            now,
            request_id=header.request_id,
        )
        await self._notify(user_id, self._state.signer.sign(alert))
        body = responses.acknowledgement(
            request.route.catalogue, header.request_id, "I99", request.srv.reference,
            request.srv.variant, now,
        )
        return Outcome(200, body, code="I99", version=request.route.version,
                       srv=request.srv.variant)
