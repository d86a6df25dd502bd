"""The thresholds stage: count the request per User ID, hold it if a threshold says so.

A held request is stored durably (thresholds/quarantine.py) before anyone is
told; then the User gets a signed DCC Alert AD1 with QuarantinedRequest, valid
for the request's DUIS version, and the HTTP exchange gets an I99: the request
was received and is held; its fate follows when the User (through the DCC)
releases or deletes it. A warning only notifies (log and metric); the request
goes on.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

from gateway.log_fields import log_event
from gateway.outcome import Outcome, Refusal, Verified
from gateway.state import GatewayState
from mmc import responses
from thresholds.engine import Action, Decision
from thresholds.memory import MemoryThresholdStore
from thresholds.quarantine import QuarantineItem, QuarantineStore
from thresholds.redis import RedisThresholdStore, ThresholdStoreUnavailable

log = logging.getLogger("duisgw.thresholds")

# (User ID, message id, signed document) -> returns once the alert is durably queued.
Notify = Callable[[str, str, bytes], Awaitable[None]]
CounterStore = MemoryThresholdStore | RedisThresholdStore


class ThresholdScreen:
    def __init__(
        self,
        state: GatewayState,
        counters: CounterStore,
        quarantine: QuarantineStore,
        notify: Notify,
        *,
        fail_open: bool = False,
    ) -> None:
        self._state = state
        self.counters = counters
        self.quarantine = quarantine
        self._notify = notify
        self._fail_open = fail_open

    async def screen(self, request: Verified) -> Outcome | None:
        """None to carry on; an Outcome (I99) when the request was quarantined."""
        header = request.header
        user_id = header.request_id.originator
        decision = await self._decide(user_id, request)
        if decision.action is Action.ALLOW:
            return None
        if decision.action is Action.WARN:
            self._warn(user_id, request, decision)
            return None
        return await self._hold(user_id, request, decision)

    async def _decide(self, user_id: str, request: Verified) -> Decision:
        now = self._state.clock.now().timestamp()  # wall clock: processes share buckets
        srv, attributes = request.srv.variant, request.facts.attributes
        store = self.counters
        if isinstance(store, MemoryThresholdStore):
            return store.check_and_count(user_id, srv, now, attributes)
        decision = store.check_and_count_nowait(user_id, srv, now, attributes)
        if decision is not None:
            return decision
        try:
            return await store.check_and_count(user_id, srv, now, attributes)
        except ThresholdStoreUnavailable as exc:
            if self._fail_open:
                log.error("thresholds store unavailable, letting request by: %s", exc)
                return Decision(Action.ALLOW)
            raise Refusal(
                503,
                "thresholds",
                "store_unavailable",
                "anomaly detection cannot count this request now; retry later",
            ) from None

    def _warn(self, user_id: str, request: Verified, decision: Decision) -> None:
        for hit in decision.warnings:
            if hit.crossed:
                self._state.metrics.threshold_warnings.inc()
                log_event(
                    log,
                    logging.WARNING,
                    "User Warning Threshold crossed",
                    "User Warning Threshold crossed user_id=%(user_id)s srv=%(srv)s "
                    "count=%(count)d limit=%(limit)d window=%(window_seconds)ds",
                    user_id=user_id,
                    srv=request.srv.variant,
                    count=hit.count,
                    limit=hit.rule.limit,
                    window_seconds=hit.rule.window_seconds,
                )

    async def _hold(self, user_id: str, request: Verified, decision: Decision) -> Outcome:
        assert decision.breach is not None
        header = request.header
        now = self._state.clock.now()
        event_ref = await self.quarantine.hold(
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
        self._state.metrics.quarantined.labels(decision.breach).inc()
        log_event(
            log,
            logging.WARNING,
            "quarantined",
            request_id=str(header.request_id),
            breach=decision.breach,
            ref=event_ref,
        )
        alert = responses.dcc_alert(
            request.route.catalogue,
            "AD1",
            responses.quarantined_request(decision.breach, header.request_id, event_ref),
            now,
            request_id=header.request_id,
        )
        await self._notify(
            user_id, f"{header.request_id}:AD1:{event_ref}", self._state.signer.sign(alert)
        )
        body = responses.acknowledgement(
            request.route.catalogue,
            header.request_id,
            "I99",
            request.srv.reference,
            request.srv.variant,
            now,
        )
        return Outcome(
            200, body, code="I99", version=request.route.version, srv=request.srv.variant
        )
